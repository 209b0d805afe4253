{{/* Chart name, overridable. */}}
{{- define "atowatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<name>, or the release name when it already contains the name. */}}
{{- define "atowatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "atowatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: never change them after install (Deployment selectors are immutable). */}}
{{- define "atowatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "atowatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "atowatch.labels" -}}
helm.sh/chart: {{ include "atowatch.chart" . }}
{{ include "atowatch.selectorLabels" . }}
app.kubernetes.io/version: {{ include "atowatch.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: detector
app.kubernetes.io/part-of: atowatch
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "atowatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "atowatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "atowatch.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- end -}}

{{- define "atowatch.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "atowatch.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/* Where the ConfigMap is mounted; the Dockerfile's CMD reads the same path. */}}
{{- define "atowatch.configDir" -}}/etc/atowatch{{- end -}}
{{- define "atowatch.configFile" -}}atowatch.toml{{- end -}}

{{/* kafka.brokers as one comma-separated string (it may be given as a list). */}}
{{- define "atowatch.brokers" -}}
{{- $b := .Values.kafka.brokers -}}
{{- if kindIs "slice" $b -}}
{{- join "," $b -}}
{{- else -}}
{{- $b | toString | nospace -}}
{{- end -}}
{{- end -}}

{{/*
A duration in atowatch's syntax ("500ms", "25s", "5m", "24h", "7d") as whole seconds,
rounded up. Fails on anything else.
*/}}
{{- define "atowatch.durationSeconds" -}}
{{- $d := toString . | trim -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h|d)$" $d) -}}
{{- fail (printf "%q is not a duration atowatch accepts (a number and a unit: ms, s, m, h, d)" $d) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $d | atoi -}}
{{- $unit := regexFind "(ms|s|m|h|d)$" $d -}}
{{- if eq $unit "ms" -}}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" -}}{{ $n }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else if eq $unit "h" -}}{{ mul $n 3600 }}
{{- else -}}{{ mul $n 86400 }}
{{- end -}}
{{- end -}}

{{/* ---- TOML rendering -------------------------------------------------------------

atowatch's config is TOML; values are YAML. These helpers render a map as TOML: scalars
and lists of scalars as `key = value` lines, nested maps as [dotted.tables]. Bare keys
stay bare, any other key is quoted ("sasl.mechanism" = ...). Strings are JSON-quoted,
which is valid TOML (JSON escapes are a subset of TOML's). Null values are left out; a
table with no scalar keys gets no header (atowatch keeps that table's defaults). */}}

{{- define "atowatch.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "atowatch.tomlValue" -}}
{{- $v := .value -}}
{{- if kindIs "map" $v -}}
{{- fail (printf "config: %s: a table inside a list is not supported" .key) -}}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v -}}
{{- $items = append $items (include "atowatch.tomlValue" (dict "key" $.key "value" .)) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "invalid" $v -}}
{{- fail (printf "config: %s: null inside a list" .key) -}}
{{- else if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- /* YAML numbers may arrive as floats: keep integers integral, others as JSON gives them. */ -}}
{{- if eq (floor $v) $v -}}{{ int64 $v }}{{- else -}}{{ toJson $v }}{{- end -}}
{{- else -}}
{{- toJson $v -}}
{{- end -}}
{{- end -}}

{{/* Args: dict "path" (list of keys, [] for the root) "table" (map). */}}
{{- define "atowatch.tomlTable" -}}
{{- $scalars := list -}}
{{- $subs := list -}}
{{- range $k := keys .table | sortAlpha -}}
{{- $v := index $.table $k -}}
{{- if kindIs "map" $v -}}
{{- $subs = append $subs $k -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $scalars = append $scalars $k -}}
{{- end -}}
{{- end -}}
{{- $lines := list -}}
{{- if $scalars -}}
{{- if .path -}}
{{- $names := list -}}
{{- range .path -}}{{- $names = append $names (include "atowatch.tomlKey" .) -}}{{- end -}}
{{- $lines = append $lines (printf "\n[%s]" (join "." $names)) -}}
{{- end -}}
{{- range $k := $scalars -}}
{{- $key := join "." (append $.path $k) -}}
{{- $lines = append $lines (printf "%s = %s" (include "atowatch.tomlKey" $k) (include "atowatch.tomlValue" (dict "key" $key "value" (index $.table $k)))) -}}
{{- end -}}
{{- end -}}
{{- range $k := $subs -}}
{{- $sub := include "atowatch.tomlTable" (dict "path" (append $.path $k) "table" (index $.table $k)) -}}
{{- if $sub -}}{{- $lines = append $lines $sub -}}{{- end -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/*
The whole atowatch.toml: values.config, plus kafka.shutdownTimeout and the librdkafka
property tables from values.kafka. Refuses keys that belong to other values.
*/}}
{{- define "atowatch.configToml" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- if not (kindIs "map" $cfg) -}}
{{- fail "config must be a map (the TOML config's tables as YAML), not a string" -}}
{{- end -}}
{{- $kafka := dict -}}
{{- if hasKey $cfg "kafka" -}}
{{- $kafka = index $cfg "kafka" | default dict -}}
{{- end -}}
{{- $owned := dict
  "brokers" "kafka.brokers"
  "group_id" "kafka.groupId"
  "topics" "kafka.topics"
  "signals_topic" "kafka.signalsTopic"
  "dead_letter_topic" "kafka.deadLetterTopic"
  "shutdown_timeout" "kafka.shutdownTimeout"
  "properties" "kafka.properties"
  "consumer_properties" "kafka.consumerProperties"
  "producer_properties" "kafka.producerProperties" -}}
{{- range $k := keys $owned | sortAlpha -}}
{{- if hasKey $kafka $k -}}
{{- fail (printf "config.kafka.%s: set the chart value %s instead" $k (index $owned $k)) -}}
{{- end -}}
{{- end -}}
{{- $dec := index $cfg "decisions" | default dict -}}
{{- range $k := list "api_token" "admin_token" -}}
{{- if index $dec $k -}}
{{- fail (printf "config.decisions.%s would be stored in a ConfigMap; put it in a Secret named by decisions.existingSecret" $k) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $cfg "http") (hasKey (index $cfg "http" | default dict) "bind") -}}
{{- fail "config.http.bind: set the chart value http.port instead" -}}
{{- end -}}
{{- $props := deepCopy (.Values.kafka.properties | default dict) -}}
{{- $cprops := deepCopy (.Values.kafka.consumerProperties | default dict) -}}
{{- $pprops := deepCopy (.Values.kafka.producerProperties | default dict) -}}
{{- range $name, $table := dict "kafka.properties" $props "kafka.consumerProperties" $cprops "kafka.producerProperties" $pprops -}}
{{- range $k, $v := $table -}}
{{- if eq $k "sasl.password" -}}
{{- fail (printf "%s: \"sasl.password\" would be stored in a ConfigMap; put it in a Secret named by kafka.sasl.existingSecret" $name) -}}
{{- end -}}
{{- if kindIs "map" $v -}}
{{- fail (printf "%s.%q: librdkafka properties are flat key: value pairs (quote dotted names as one key)" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $stats := index $props "statistics.interval.ms" | default (index $cprops "statistics.interval.ms") | default 0 -}}
{{- if not (gt (float64 $stats) 0.0) -}}
{{- fail "kafka.properties.\"statistics.interval.ms\" must be > 0: /readyz and the lag metrics come from librdkafka statistics (default 1000)" -}}
{{- end -}}
{{- $_ := set $kafka "shutdown_timeout" (toString .Values.kafka.shutdownTimeout) -}}
{{- $_ = set $kafka "properties" $props -}}
{{- $_ = set $kafka "consumer_properties" $cprops -}}
{{- $_ = set $kafka "producer_properties" $pprops -}}
{{- $_ = set $cfg "kafka" $kafka -}}
# atowatch configuration, rendered by the {{ include "atowatch.chart" . }} chart from the
# values `config` and `kafka.*` of release {{ .Release.Name }}.
# Brokers, group id, topics, http.bind and SASL credentials come from ATOWATCH_* env vars
# set on the container. Every key not written here has atowatch's default.
{{ include "atowatch.tomlTable" (dict "path" (list) "table" $cfg) }}
{{ end -}}

{{/* Validations shared by the templates. */}}
{{- define "atowatch.validate" -}}
{{- $shutdown := include "atowatch.durationSeconds" .Values.kafka.shutdownTimeout | atoi -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- if le $grace $shutdown -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than kafka.shutdownTimeout (%s = %ds), or the kubelet kills atowatch mid-drain; leave 10s or more between them" $grace (toString .Values.kafka.shutdownTimeout) $shutdown) -}}
{{- end -}}
{{- if not (include "atowatch.brokers" .) -}}
{{- fail "kafka.brokers must be set (host:port, comma-separated or a list)" -}}
{{- end -}}
{{- if not .Values.kafka.topics -}}
{{- fail "kafka.topics must list at least one topic" -}}
{{- end -}}
{{- range .Values.kafka.topics -}}
{{- if not (regexMatch "^[A-Za-z0-9._-]{1,249}$" (toString .)) -}}
{{- fail (printf "kafka.topics: %q is not a valid Kafka topic name" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.kafka.sasl.existingSecret (not .Values.kafka.sasl.passwordKey) -}}
{{- fail "kafka.sasl.passwordKey must name the Secret key holding the password" -}}
{{- end -}}
{{- end -}}
