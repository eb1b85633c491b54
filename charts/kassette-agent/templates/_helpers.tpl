{{- define "kassette-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kassette-agent.labels" -}}
helm.sh/chart: {{ include "kassette-agent.chart" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: kassette
{{- end }}

{{- define "kassette-agent.annotations" -}}
{{- if .Values.keepOnUninstall }}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{- define "kassette-agent.image" -}}
{{- $i := .Values.sidecar.image }}
{{- if $i.digest }}
{{- printf "%s@%s" $i.repository $i.digest }}
{{- else }}
{{- printf "%s:%s" $i.repository ($i.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- /* The CassandraDatacenter spec.podTemplateSpec fragment of
sidecar/cassandradatacenter-podtemplatespec.yaml (the one source of the
snippet), with this release's values put in. */ -}}
{{- define "kassette-agent.podTemplateSpec" -}}
{{- $v := .Values.sidecar }}
{{- $s := $v.storage }}
{{- $spec := .Files.Get "sidecar/cassandradatacenter-podtemplatespec.yaml" | fromYaml }}
{{- /* Settings this release decides: set, replaced, or (empty) removed. */}}
{{- $set := dict
  "KASSETTE_AGENT_LISTEN" (printf "0.0.0.0:%d" ($v.port | int))
  "KASSETTE_STORAGE_PROVIDER" $s.provider
  "KASSETTE_STORAGE_BUCKET" $s.bucket
  "KASSETTE_STORAGE_PREFIX" $s.prefix
  "KASSETTE_STORAGE_ENDPOINT" $s.endpoint
  "KASSETTE_STORAGE_ALLOW_HTTP" (ternary "true" "" $s.allowHttp)
  "KASSETTE_STORAGE_REGION" $s.region
  "KASSETTE_STORAGE_CREDENTIALS_FILE" (ternary "/etc/kassette/storage" "" (ne $s.existingSecret ""))
  "KASSETTE_CONCURRENCY" (ternary "" (toString $v.concurrency) (kindIs "invalid" $v.concurrency))
  "KASSETTE_MAX_BANDWIDTH" $v.maxBandwidth
}}
{{- if not .Values.tls.enabled }}
{{- $_ := set $set "KASSETTE_AGENT_TLS_CERT" "" }}
{{- $_ := set $set "KASSETTE_AGENT_TLS_KEY" "" }}
{{- end }}
{{- $dropVolumes := list }}
{{- if not .Values.tls.enabled }}{{ $dropVolumes = append $dropVolumes "kassette-agent-tls" }}{{ end }}
{{- if not $s.existingSecret }}{{ $dropVolumes = append $dropVolumes "kassette-storage" }}{{ end }}
{{- range $spec.spec.containers }}
{{- if eq .name "kassette-agent" }}
{{- $_ := set . "image" (include "kassette-agent.image" $) }}
{{- $_ := set . "imagePullPolicy" $v.image.pullPolicy }}
{{- $_ := set . "ports" (list (dict "name" "kassette-agent" "containerPort" ($v.port | int) "protocol" "TCP")) }}
{{- $env := list }}
{{- $seen := dict }}
{{- range .env }}
{{- $name := .name }}
{{- if hasKey $set $name }}
{{- $_ := set $seen $name true }}
{{- with get $set $name }}{{ $env = append $env (dict "name" $name "value" .) }}{{ end }}
{{- else }}
{{- $env = append $env . }}
{{- end }}
{{- end }}
{{- range $name := keys $set | sortAlpha }}
{{- if and (not (hasKey $seen $name)) (get $set $name) }}
{{- $env = append $env (dict "name" $name "value" (get $set $name)) }}
{{- end }}
{{- end }}
{{- $_ := set . "env" $env }}
{{- $mounts := list }}
{{- range .volumeMounts }}
{{- if not (has .name $dropVolumes) }}{{ $mounts = append $mounts . }}{{ end }}
{{- end }}
{{- $_ := set . "volumeMounts" $mounts }}
{{- end }}
{{- end }}
{{- $volumes := list }}
{{- range $spec.spec.volumes }}
{{- if not (has .name $dropVolumes) }}
{{- if eq .name "kassette-agent-token" }}{{ $_ := set .secret "secretName" $.Values.token.secretName }}{{ end }}
{{- if eq .name "kassette-agent-tls" }}{{ $_ := set .secret "secretName" $.Values.tls.secretName }}{{ end }}
{{- if eq .name "kassette-storage" }}{{ $_ := set .secret "secretName" $s.existingSecret }}{{ end }}
{{- $volumes = append $volumes . }}
{{- end }}
{{- end }}
{{- $_ := set $spec.spec "volumes" $volumes }}
{{- toYaml $spec }}
{{- end }}
