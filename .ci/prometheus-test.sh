#!/usr/bin/env bash
# CI for the monitoring files: the Prometheus alert rules, their promtool unit tests, the
# Grafana dashboard and the runbook they link to.
#
#   1. promtool check rules / promtool test rules (installs Debian's `prometheus`
#      package, which ships promtool, if promtool is missing);
#   2. every alert has severity (critical|warning), category (security|health), summary,
#      description and a runbook_url whose anchor is a section of docs/runbook.md; every
#      alert has a unit-test case where it fires (labels and annotations checked) and one
#      where it must not; no test names an alert that does not exist;
#   3. the dashboard is valid JSON with the datasource/job/instance variables, and each
#      of its queries is valid PromQL (checked by promtool as recording rules);
#   4. every atowatch_* metric named in the rules, tests, dashboard and runbook exists in
#      src/metrics.rs (histograms also as _bucket/_sum/_count): catches typos, and
#      metrics renamed in the code;
#   5. the Helm chart's copy of the rules (helm/atowatch/files/atowatch-rules.yml), when
#      the chart exists, is identical to config/prometheus/atowatch-rules.yml.
#
# Exits non-zero on the first failure. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=config/prometheus/atowatch-rules.yml
tests=config/prometheus/atowatch-rules.test.yml
dashboard=config/grafana/atowatch.json
runbook=docs/runbook.md
metrics_src=src/metrics.rs
chart_rules=helm/atowatch/files/atowatch-rules.yml

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }
die() { echo "FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in "$rules" "$tests" "$dashboard" "$runbook" "$metrics_src"; do
    [ -f "$f" ] || die "$f is missing"
done

step "tools: promtool, python3 with PyYAML"
if ! command -v promtool >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # Debian's prometheus package ships /usr/bin/promtool. Refresh the package lists only
    # when they do not know it yet.
    if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        $sudo apt-get update -qq
    fi
    $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -1
if ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install -q pyyaml
fi
python3 -c 'import yaml; print("PyYAML", yaml.__version__)'

step "promtool check rules $rules"
promtool check rules "$rules"

step "promtool test rules $tests"
promtool test rules "$tests"

step "alerts: labels, annotations, runbook anchors, a firing and a quiet test each"
python3 - "$rules" "$tests" "$runbook" <<'PY'
import re, sys, yaml

rules_path, tests_path, runbook_path = sys.argv[1:]
RUNBOOK_BASE = "https://example.com/atowatch/docs/runbook.md#"
errors = []

def slug(heading):
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")

anchors = set()
for line in open(runbook_path):
    m = re.match(r"^#{1,6}\s+(.*)$", line)
    if m:
        anchors.add(slug(m.group(1)))

doc = yaml.safe_load(open(rules_path))
alerts = []
for g in doc["groups"]:
    for r in g["rules"]:
        if "alert" not in r:
            continue
        name = r["alert"]
        alerts.append(name)
        labels = r.get("labels") or {}
        ann = r.get("annotations") or {}
        if labels.get("severity") not in ("critical", "warning"):
            errors.append(f"{name}: labels.severity must be critical or warning, not {labels.get('severity')!r}")
        if labels.get("category") not in ("security", "health"):
            errors.append(f"{name}: labels.category must be security or health, not {labels.get('category')!r}")
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                errors.append(f"{name}: annotations.{key} is missing")
        url = ann.get("runbook_url", "")
        want = RUNBOOK_BASE + name.lower()
        if url != want:
            errors.append(f"{name}: runbook_url is {url!r}, expected {want!r}")
        if name.lower() not in anchors:
            errors.append(f"{name}: {runbook_path} has no section '## {name}' (anchor #{name.lower()})")
if len(set(alerts)) != len(alerts):
    errors.append("duplicate alert names")

firing, quiet = {}, {}
cases = 0
tdoc = yaml.safe_load(open(tests_path))
for t in tdoc["tests"]:
    for c in t.get("alert_rule_test") or []:
        cases += 1
        name = c["alertname"]
        if name not in alerts:
            errors.append(f"test {t.get('name')!r}: alert {name!r} does not exist in {rules_path}")
        exp = c.get("exp_alerts") or []
        if not exp:
            quiet[name] = quiet.get(name, 0) + 1
            continue
        for e in exp:
            if not e.get("exp_labels") or not e.get("exp_annotations"):
                errors.append(f"test {t.get('name')!r}: {name} at {c['eval_time']}: check exp_labels and exp_annotations")
        firing[name] = firing.get(name, 0) + 1
for name in alerts:
    if not firing.get(name):
        errors.append(f"{name}: no test case where it fires")
    if not quiet.get(name):
        errors.append(f"{name}: no test case where it must stay quiet (exp_alerts: [])")

if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"{len(alerts)} alerts; {len(tdoc['tests'])} test groups, {cases} cases "
      f"({sum(firing.values())} firing, {sum(quiet.values())} quiet)")
for name in alerts:
    print(f"  {name}: {firing[name]} firing, {quiet[name]} quiet")
PY

step "dashboard: JSON, variables, PromQL"
python3 -m json.tool "$dashboard" >/dev/null || die "$dashboard is not valid JSON"
python3 - "$dashboard" "$tmp/dashboard-queries.yml" <<'PY'
import json, re, sys, yaml

path, out = sys.argv[1:]
d = json.load(open(path))
errors = []
if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
    errors.append(f"schemaVersion {d.get('schemaVersion')!r}: expected 36 or newer")
variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("templating: needs a `datasource` variable of type datasource, query prometheus")
for v in ("job", "instance"):
    if v not in variables:
        errors.append(f"templating: no `{v}` variable")

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

ids, exprs = [], []
for p in walk(d.get("panels", [])):
    ids.append(p.get("id"))
    if p.get("type") == "row":
        continue
    if (p.get("datasource") or {}).get("uid") != "${datasource}":
        errors.append(f"panel {p.get('title')!r}: datasource must be ${{datasource}}")
    for t in p.get("targets", []):
        if (t.get("datasource") or {}).get("uid") != "${datasource}":
            errors.append(f"panel {p.get('title')!r} target {t.get('refId')}: datasource must be ${{datasource}}")
        exprs.append((p.get("title"), t["expr"]))
for v in variables.values():
    q = v.get("query")
    if v.get("type") == "query":
        q = q["query"] if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
        if not m:
            errors.append(f"variable {v['name']}: expected label_values(SELECTOR, LABEL), got {q!r}")
        else:
            exprs.append((f"variable {v['name']}", m.group(1)))
for a in d.get("annotations", {}).get("list", []):
    if a.get("expr"):
        exprs.append((f"annotation {a.get('name')}", a["expr"]))
if len(set(ids)) != len(ids):
    errors.append("panel ids are not unique")

# Grafana's variables, replaced by values Prometheus accepts, so promtool can parse each
# query as a recording rule.
subst = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "6h"),
         ("$job", ".*"), ("$instance", ".*")]
records = []
for i, (title, e) in enumerate(exprs):
    for k, v in subst:
        e = e.replace(k, v)
    if "$" in e.replace("$1", ""):
        errors.append(f"{title}: unknown variable in {e!r}")
    records.append({"record": f"dashboard:query_{i}", "expr": e})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, open(out, "w"))
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"{sum(1 for p in walk(d['panels']) if p.get('type') != 'row')} panels, {len(exprs)} queries")
PY
promtool check rules "$tmp/dashboard-queries.yml" >/dev/null \
    || { promtool check rules "$tmp/dashboard-queries.yml" || true; die "a dashboard query is not valid PromQL"; }
echo "every dashboard query parses"

step "metric names against $metrics_src"
# Names registered in the code; a histogram's also with _bucket, _sum and _count.
grep -o '"atowatch_[a-z0-9_]*"' "$metrics_src" | tr -d '"' | sort -u > "$tmp/known"
awk '/[^_a-z]histogram\(/ && !/fn histogram/ { h = 1 }
     h && match($0, /"atowatch_[a-z0-9_]*"/) {
         n = substr($0, RSTART + 1, RLENGTH - 2); print n "_bucket"; print n "_sum"; print n "_count"; h = 0
     }' "$metrics_src" >> "$tmp/known"
sort -u -o "$tmp/known" "$tmp/known"
[ "$(wc -l < "$tmp/known")" -ge 10 ] || die "found only $(wc -l < "$tmp/known") metric names in $metrics_src"
missing=0
for f in "$rules" "$tests" "$dashboard" "$runbook"; do
    while read -r name; do
        if ! grep -qxF "$name" "$tmp/known"; then
            echo "  $f: $name is not a metric in $metrics_src" >&2
            missing=1
        fi
    done < <(grep -o 'atowatch_[a-z0-9][a-z0-9_]*' "$f" | sort -u)
done
[ "$missing" = 0 ] || die "unknown metric names (typo, or renamed in the code?)"
printf '%s metric names known; every one used in the rules, tests, dashboard and runbook exists\n' \
    "$(wc -l < "$tmp/known")"

step "Helm chart's copy of the rules"
if [ -f "$chart_rules" ]; then
    if ! cmp -s "$chart_rules" "$rules"; then
        diff -u "$rules" "$chart_rules" | head -20 >&2 || true
        die "$chart_rules differs from $rules; copy it: cp $rules $chart_rules"
    fi
    echo "$chart_rules is identical to $rules"
else
    echo "note: $chart_rules does not exist (no chart yet); skipped"
fi

step "done"
echo "prometheus-test: ok in ${SECONDS}s"
