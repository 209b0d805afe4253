#!/usr/bin/env bash
# CI for the Helm chart (helm/atowatch): lint, render with the default and the full CI
# values, validate the manifests against Kubernetes' schemas, check the rendered
# Deployment/Service/PDB/NetworkPolicy/ServiceMonitor/PrometheusRule, and feed the
# rendered ConfigMap's TOML to `atowatch check-config` (plus negative cases that must
# fail). Run from anywhere; installs helm and kubernetes-validate idempotently; builds
# target/release/atowatch if it is missing (ATOWATCH_BIN overrides the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"

chart=helm/atowatch
full_values=$chart/ci/full-values.yaml
k8s_versions=(1.30.0 1.37.0)

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }
die() { echo "FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "tools: helm, kubernetes-validate"
bash .ci/install-helm.sh "$HOME/.local/bin" >/dev/null
helm version --short
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    python3 -m pip install -q kubernetes-validate
fi
kubernetes-validate --version
python3 -c 'import yaml, tomllib' # PyYAML (kubernetes-validate's dependency), Python >= 3.11

bin=${ATOWATCH_BIN:-target/release/atowatch}
if [ ! -x "$bin" ]; then
    [ -z "${ATOWATCH_BIN:-}" ] || die "ATOWATCH_BIN=$ATOWATCH_BIN is not an executable"
    step "cargo build --release (no $bin yet)"
    cargo build --release
fi
"$bin" --version 2>/dev/null || true

step "helm lint"
helm lint --strict "$chart"
helm lint --strict "$chart" -f "$full_values"

step "helm template (default values, full CI values)"
helm template atowatch "$chart" --namespace detection > "$tmp/default.yaml"
helm template full "$chart" --namespace detection -f "$full_values" > "$tmp/full.yaml"
# Same chart, one detector value changed: the pod template's checksum must change.
helm template full "$chart" --namespace detection -f "$full_values" \
    --set config.rules.bruteforce.min_failures=21 > "$tmp/full-changed.yaml"
wc -l "$tmp/default.yaml" "$tmp/full.yaml" | sed -n 1,2p

# One Python helper, several subcommands (split, check, toml).
cat > "$tmp/check.py" <<'PY'
import json, sys, tomllib, yaml

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def one(ds, kind):
    found = [d for d in ds if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]

CRD_GROUPS = ("monitoring.coreos.com/",)

def split(src, core_out, crd_out):
    """Core kinds to one file (schema-validated), prometheus-operator CRs to another."""
    ds = docs(src)
    core = [d for d in ds if not d["apiVersion"].startswith(CRD_GROUPS)]
    crds = [d for d in ds if d["apiVersion"].startswith(CRD_GROUPS)]
    for out, items in ((core_out, core), (crd_out, crds)):
        with open(out, "w") as f:
            yaml.safe_dump_all(items, f, sort_keys=False)
    print(f"{len(core)} core manifests ({', '.join(sorted(d['kind'] for d in core))}); "
          f"{len(crds)} prometheus-operator ({', '.join(sorted(d['kind'] for d in crds)) or 'none'})")

def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}

def dur_s(d):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for u in ("ms", "s", "m", "h", "d"):
        if d.endswith(u) and d[: -len(u)].isdigit():
            return int(d[: -len(u)]) * units[u]
    raise AssertionError(f"bad duration {d!r}")

def check(path, values_path, changed_path=None):
    ds = docs(path)
    values = yaml.safe_load(open(values_path)) if values_path != "-" else {}
    kafka_v = values.get("kafka", {})
    dep = one(ds, "Deployment")
    svc = one(ds, "Service")
    cm = one(ds, "ConfigMap")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    errs = []
    def expect(cond, msg):
        if not cond:
            errs.append(msg)

    # Probes.
    lp, rp = c.get("livenessProbe", {}), c.get("readinessProbe", {})
    expect(lp.get("httpGet", {}).get("path") == "/healthz", "livenessProbe is not GET /healthz")
    expect(rp.get("httpGet", {}).get("path") == "/readyz", "readinessProbe is not GET /readyz")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    expect("http-metrics" in ports, "no container port named http-metrics")
    for p in (lp, rp):
        expect(p.get("httpGet", {}).get("port") in ("http-metrics", ports.get("http-metrics")),
               "probe port is not the http-metrics port")

    # Security.
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "pod does not run as non-root")
    expect(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "container does not run as non-root")
    expect(sc.get("readOnlyRootFilesystem") is True, "root filesystem is not read-only")
    expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities do not drop ALL")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
           or sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "no RuntimeDefault seccomp profile")
    expect(pod.get("automountServiceAccountToken") is False, "service account token is mounted")

    # Grace period vs. the drain deadline in the rendered TOML.
    toml_text = cm["data"]["atowatch.toml"]
    cfg = tomllib.loads(toml_text)
    shutdown = dur_s(cfg["kafka"]["shutdown_timeout"])
    grace = pod.get("terminationGracePeriodSeconds")
    expect(isinstance(grace, int) and grace > shutdown,
           f"terminationGracePeriodSeconds {grace} is not above kafka.shutdown_timeout ({shutdown}s)")

    # The config file the container reads is the ConfigMap's.
    args = c.get("args", [])
    expect(args[:2] == ["run", "--config"], f"args {args}")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    expect(vols.get("config", {}).get("configMap", {}).get("name") == cm["metadata"]["name"], "config volume is not the ConfigMap")
    expect(len(args) == 3 and args[2] == mounts.get("config", {}).get("mountPath", "?") + "/atowatch.toml",
           "--config is not the mounted ConfigMap's atowatch.toml")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    expect(len(ann.get("checksum/config", "")) == 64, "no checksum/config annotation on the pod template")

    # Env overrides.
    env = env_of(c)
    brokers = kafka_v.get("brokers", "kafka:9092")
    brokers = ",".join(brokers) if isinstance(brokers, list) else brokers
    want = {
        "ATOWATCH_BROKERS": brokers,
        "ATOWATCH_GROUP_ID": kafka_v.get("groupId", "atowatch"),
        "ATOWATCH_TOPICS": ",".join(kafka_v.get("topics", ["auth-events"])),
        "ATOWATCH_SIGNALS_TOPIC": kafka_v.get("signalsTopic", "ato-signals"),
        "ATOWATCH_DEAD_LETTER_TOPIC": kafka_v.get("deadLetterTopic", "auth-events-dlq"),
        "ATOWATCH_HTTP_BIND": f"0.0.0.0:{ports.get('http-metrics')}",
        "ATOWATCH_LOG": values.get("logLevel", "info"),
    }
    for k, v in want.items():
        expect(env.get(k, {}).get("value") == v, f"env {k} = {env.get(k)!r}, want {v!r}")
    sasl = kafka_v.get("sasl", {})
    if sasl.get("existingSecret"):
        for var, key in (("ATOWATCH_SASL_USERNAME", sasl.get("usernameKey", "username")),
                         ("ATOWATCH_SASL_PASSWORD", sasl.get("passwordKey", "password"))):
            ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
            expect(ref == {"name": sasl["existingSecret"], "key": key}, f"env {var} secretKeyRef = {ref!r}")
    else:
        expect("ATOWATCH_SASL_PASSWORD" not in env, "SASL env without kafka.sasl.existingSecret")
    expect("sasl.password" not in toml_text, "sasl.password in the ConfigMap")
    dec = values.get("decisions", {})
    if dec.get("existingSecret"):
        pairs = [("ATOWATCH_DECISIONS_TOKEN", dec.get("tokenKey", "token"))]
        if dec.get("adminTokenKey"):
            pairs.append(("ATOWATCH_DECISIONS_ADMIN_TOKEN", dec["adminTokenKey"]))
        for var, key in pairs:
            ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
            expect(ref == {"name": dec["existingSecret"], "key": key}, f"env {var} secretKeyRef = {ref!r}")
    else:
        expect("ATOWATCH_DECISIONS_TOKEN" not in env, "decisions token env without decisions.existingSecret")
    expect("api_token" not in toml_text and "admin_token" not in toml_text, "a decisions token in the ConfigMap")

    # Service: port named http-metrics, selecting the pods.
    (sp,) = svc["spec"]["ports"]
    expect(sp["name"] == "http-metrics" and sp["port"] == values.get("service", {}).get("port", 9464)
           and sp["targetPort"] == "http-metrics", f"service port {sp}")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    expect(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "service selector does not match the pods")
    expect(dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"], "deployment and service selectors differ")

    # PDB only with more than one replica.
    pdbs = [d for d in ds if d["kind"] == "PodDisruptionBudget"]
    replicas = dep["spec"]["replicas"]
    if replicas > 1:
        expect(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1, "no PDB with maxUnavailable 1")
        expect(pdbs and pdbs[0]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], "PDB selector")
    else:
        expect(not pdbs, "PDB rendered for a single replica")

    # Optional parts.
    sms = [d for d in ds if d["kind"] == "ServiceMonitor"]
    rules = [d for d in ds if d["kind"] == "PrometheusRule"]
    nps = [d for d in ds if d["kind"] == "NetworkPolicy"]
    expect(len(sms) == bool(values.get("serviceMonitor", {}).get("enabled")), "ServiceMonitor presence")
    expect(len(rules) == bool(values.get("prometheusRule", {}).get("enabled")), "PrometheusRule presence")
    expect(len(nps) == bool(values.get("networkPolicy", {}).get("enabled")), "NetworkPolicy presence")
    for sm in sms:
        expect(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
        svc_labels = svc["metadata"]["labels"]
        expect(all(svc_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
               "ServiceMonitor selector does not match the Service")
        expect([e["port"] for e in sm["spec"]["endpoints"]] == ["http-metrics"], "ServiceMonitor endpoint port")
        expect(sm["spec"]["endpoints"][0].get("path") == "/metrics", "ServiceMonitor path")
        jl = sm["spec"].get("jobLabel")
        expect(jl is None or svc_labels.get(jl) == "atowatch", "jobLabel does not give job=atowatch")
    for pr in rules:
        expect(pr["apiVersion"] == "monitoring.coreos.com/v1", "PrometheusRule apiVersion")
        groups = pr["spec"]["groups"]
        shipped = yaml.safe_load(open("helm/atowatch/files/atowatch-rules.yml"))["groups"]
        expect(groups[: len(shipped)] == shipped, "PrometheusRule groups differ from files/atowatch-rules.yml")
        extra = values.get("prometheusRule", {}).get("additionalGroups", [])
        expect(groups[len(shipped):] == extra, "additionalGroups not appended")
        names = [g.get("name") for g in groups]
        expect(len(names) == len(set(names)) and all(names), f"rule group names {names}")
        for g in groups:
            for r in g.get("rules", []):
                expect(("alert" in r) != ("record" in r) and isinstance(r.get("expr"), (str, int, float)),
                       f"rule in group {g.get('name')}: needs exactly one of alert/record, and expr")
    for np in nps:
        ing = np["spec"]["ingress"]
        expect(len(ing) == 1 and ing[0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}], f"NetworkPolicy ingress {ing}")
        want_from = values.get("networkPolicy", {}).get("ingressFrom", [])
        expect(ing[0].get("from", []) == want_from, "NetworkPolicy ingress peers")
        eg = np["spec"]["egress"]
        kports = sorted(p["port"] for p in eg[0]["ports"])
        want_ports = sorted(values.get("networkPolicy", {}).get("egress", {}).get("kafkaPorts", [9092]))
        expect(kports == want_ports, f"Kafka egress ports {kports}, want {want_ports}")
        expect(any({"port": 53, "protocol": "UDP"} in r["ports"] for r in eg), "no DNS egress")
        expect(np["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], "NetworkPolicy podSelector")

    # A config change rolls the pods.
    if changed_path:
        ann2 = one(docs(changed_path), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        expect(ann2["checksum/config"] != ann["checksum/config"], "checksum/config unchanged after a config change")

    if errs:
        print("\n".join("  - " + e for e in errs))
        sys.exit(f"{path}: {len(errs)} check(s) failed")
    print(f"{path}: Deployment ({replicas} replica(s)), Service, PDB={len(pdbs)}, ServiceMonitor={len(sms)}, "
          f"PrometheusRule={len(rules)}, NetworkPolicy={len(nps)}: ok")

def merge(a, b):
    """Helm's values merge: maps deep-merged, null deletes."""
    out = dict(a)
    for k, v in b.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out

def toml(path, values_path, out, creds):
    """Writes the ConfigMap's TOML; checks it parses to exactly what the values say."""
    cm = one(docs(path), "ConfigMap")
    text = cm["data"]["atowatch.toml"]
    got = tomllib.loads(text)
    base = yaml.safe_load(open("helm/atowatch/values.yaml"))
    vals = merge(base, yaml.safe_load(open(values_path)) if values_path != "-" else {})
    k = vals["kafka"]
    want = merge(vals.get("config") or {}, {})
    want.setdefault("kafka", {}).update({
        "shutdown_timeout": k["shutdownTimeout"],
        "properties": k["properties"] or {},
        "consumer_properties": k["consumerProperties"] or {},
        "producer_properties": k["producerProperties"] or {},
    })
    want["kafka"] = {kk: vv for kk, vv in want["kafka"].items() if vv != {}}
    if got != want:
        sys.exit(f"{path}: the ConfigMap's TOML is not the values' config:\n got  {json.dumps(got, sort_keys=True)}\n want {json.dumps(want, sort_keys=True)}")
    with open(out, "w") as f:
        f.write(text)
    print(f"{path}: ConfigMap TOML == values ({len(text.splitlines())} lines)")

cmd, *args = sys.argv[1:]
{"split": split, "check": check, "toml": toml}[cmd](*args)
PY
py() { python3 "$tmp/check.py" "$@"; }

step "kubernetes-validate --strict (Kubernetes ${k8s_versions[*]})"
# ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) are CRDs with no schema in
# kubernetes-validate; they are split off here and checked structurally below instead.
# A core kind without a schema (a typo) prints WARN and fails this step.
for name in default full; do
    py split "$tmp/$name.yaml" "$tmp/$name-core.yaml" "$tmp/$name-crds.yaml"
    for v in "${k8s_versions[@]}"; do
        if ! kubernetes-validate --strict --quiet -k "$v" "$tmp/$name-core.yaml" > "$tmp/kv.out" 2>&1; then
            cat "$tmp/kv.out"; die "$name manifests do not validate against Kubernetes $v"
        fi
        if grep -q . "$tmp/kv.out"; then
            cat "$tmp/kv.out"; die "$name manifests: kubernetes-validate warnings against $v"
        fi
        echo "$name: valid against Kubernetes $v (strict)"
    done
done

step "rendered resources: probes, security context, grace period, env, selectors, optional parts"
py check "$tmp/default.yaml" -
py check "$tmp/full.yaml" "$full_values" "$tmp/full-changed.yaml"
# The image's default command reads the file the chart mounts.
grep -q '"/etc/atowatch/atowatch.toml"' Dockerfile || die "Dockerfile CMD does not read /etc/atowatch/atowatch.toml"

step "atowatch check-config on the rendered ConfigMap ($bin)"
py toml "$tmp/default.yaml" - "$tmp/default.toml" no
py toml "$tmp/full.yaml" "$full_values" "$tmp/full.toml" yes
for name in default full; do
    # The pod gets sasl.username/password from the Secret as ATOWATCH_SASL_*; check-config
    # applies the same environment, as `run` does.
    if ! ATOWATCH_SASL_USERNAME=ci-user ATOWATCH_SASL_PASSWORD=ci-password \
        "$bin" check-config "$tmp/$name.toml" > "$tmp/$name.effective" 2> "$tmp/$name.err"; then
        cat "$tmp/$name.err"; sed -n '1,200p' "$tmp/$name.toml"
        die "check-config rejected the $name values' ConfigMap"
    fi
    echo "$name: check-config exit 0"
done
# atowatch read the overrides as meant (values from ci/full-values.yaml).
python3 - "$tmp/full.effective" <<'PY'
import sys, tomllib
text = open(sys.argv[1]).read()
eff = tomllib.loads(text.split("\n", 1)[1])
checks = {
    ("rules", "bruteforce", "min_failures"): 20,
    ("rules", "ip_velocity", "enabled"): False,
    ("rules", "credential_stuffing", "severity"): "critical",
    ("signals", "escalation_factor"): 4.5,
    ("normalize", "ipv6_prefix"): 56,
    ("kafka", "shutdown_timeout"): "20s",
    ("kafka", "properties", "sasl.mechanism"): "SCRAM-SHA-512",
    ("kafka", "properties", "sasl.password"): "<redacted>",  # from the Secret, never printed
    ("kafka", "properties", "statistics.interval.ms"): "1000",
    ("kafka", "consumer_properties", "auto.offset.reset"): "earliest",
    ("kafka", "consumer_properties", "fetch.queue.backoff.ms"): "5",
    ("rules", "distributed_bruteforce", "min_failures"): 10,  # untouched default
}
bad = []
for path, want in checks.items():
    v = eff
    for p in path:
        v = v.get(p, {}) if isinstance(v, dict) else None
    if v != want:
        bad.append(f"{'.'.join(path)} = {v!r}, want {want!r}")
if bad:
    sys.exit("effective config differs:\n  " + "\n  ".join(bad))
print("full: effective config has the overrides and keeps the defaults")
PY

step "negative cases (must fail)"
expect_check_config_fails() { # name, --set args...
    local name=$1; shift
    helm template neg "$chart" -f "$full_values" "$@" > "$tmp/neg.yaml"
    python3 - "$tmp/neg.yaml" "$tmp/neg.toml" <<'PY'
import sys, yaml
cm = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"][0]
text = cm["data"]["atowatch.toml"]
marker = "\n[kafka.properties]\n"
text = text.replace(marker, marker + '"sasl.username" = "u"\n"sasl.password" = "p"\n', 1)
open(sys.argv[2], "w").write(text)
PY
    set +e
    "$bin" check-config "$tmp/neg.toml" > /dev/null 2> "$tmp/neg.err"
    local rc=$?
    set -e
    [ "$rc" -eq 2 ] || die "$name: check-config exit $rc, want 2"
    echo "$name: check-config exit 2: $(head -1 "$tmp/neg.err")"
}
expect_check_config_fails "unknown detector key" --set config.rules.bruteforce.min_failurez=3
grep -q 'min_failurez' "$tmp/neg.err" || die "the error does not name the bad key"
expect_check_config_fails "impossible detector value" --set config.rules.bruteforce.min_failures=0
expect_check_config_fails "unknown librdkafka property" --set 'kafka.properties.sasl\.mechanismz=PLAIN'

expect_render_fails() { # name, expected message part, --set args...
    local name=$1 msg=$2; shift 2
    if helm template neg "$chart" "$@" > /dev/null 2> "$tmp/neg.err"; then
        die "$name: helm template succeeded"
    fi
    grep -q -- "$msg" "$tmp/neg.err" || { cat "$tmp/neg.err"; die "$name: error does not say '$msg'"; }
    echo "$name: refused ($msg)"
}
expect_render_fails "grace period not above shutdown_timeout" "must be greater than kafka.shutdownTimeout" \
    --set terminationGracePeriodSeconds=25
expect_render_fails "sasl.password in values" "put it in a Secret" --set 'kafka.properties.sasl\.password=hunter2'
expect_render_fails "brokers in config" "set the chart value kafka.brokers" --set config.kafka.brokers=x:9092
expect_render_fails "decisions admin token in values" "put it in a Secret named by decisions.existingSecret" \
    --set config.decisions.admin_token=0123456789abcdef0123
expect_render_fails "statistics off" "statistics.interval.ms" --set 'kafka.properties.statistics\.interval\.ms=0'
expect_render_fails "typo in a value name (schema)" "additional properties" --set replicas=3
expect_render_fails "bad topic name (schema)" "does not match pattern" --set 'kafka.topics[0]=auth/events'

step "done"
echo "helm chart: all checks passed in ${SECONDS}s"
