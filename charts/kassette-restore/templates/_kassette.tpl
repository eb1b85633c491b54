{{- /*
Shared by kassette-backup and kassette-restore: this file is identical in
both charts (tests/charts.rs checks it), so the two Jobs configure the
kassette coordinator the same way. What differs lives in each chart's
_helpers.tpl: "kassette.role" (backup / restore) and "kassette.roleEnv" (the
role's own KASSETTE_* variables).
*/ -}}

{{- define "kassette.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* Release-scoped name; 52 characters at most, because a CronJob's Jobs
add 11 (a CronJob name longer than 52 is refused). */ -}}
{{- define "kassette.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kassette.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kassette.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kassette.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kassette.labels" -}}
helm.sh/chart: {{ include "kassette.chart" . }}
{{ include "kassette.selectorLabels" . }}
app.kubernetes.io/version: {{ include "kassette.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ include "kassette.role" . }}
app.kubernetes.io/part-of: kassette
{{- end }}

{{- define "kassette.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kassette.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kassette.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- /* repository:tag, or repository@digest when a digest is given (the
digest alone decides what runs). */ -}}
{{- define "kassette.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "kassette.imageTag" .) }}
{{- end }}
{{- end }}

{{- /* The namespace of the Cassandra pods. */ -}}
{{- define "kassette.cassandraNamespace" -}}
{{- .Values.discovery.namespace | default .Release.Namespace }}
{{- end }}

{{- /* A comma-separated list from a string or a list of strings. */ -}}
{{- define "kassette.csv" -}}
{{- if kindIs "slice" . }}{{ join "," . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{- /* Where the Secrets are mounted in the coordinator container. */ -}}
{{- define "kassette.paths" -}}
agentToken: /etc/kassette/agent-token
agentTls: /etc/kassette/agent-tls
cql: /etc/kassette/cql
storage: /etc/kassette/storage
storageCa: /etc/kassette/storage-ca
sseC: /etc/kassette/sse-c
{{- end }}

{{- /* The coordinator's environment shared by backup and restore: the
pod's identity (for Events on its Job), the datacenter, how to reach the
agents and CQL, storage, logging, the pass. */ -}}
{{- define "kassette.env" -}}
{{- $paths := include "kassette.paths" . | fromYaml }}
{{- $s := .Values.storage }}
- name: KASSETTE_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: KASSETTE_POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: KASSETTE_CLUSTER
  value: {{ .Values.cluster | quote }}
- name: KASSETTE_DATACENTER
  value: {{ .Values.datacenter | quote }}
- name: KASSETTE_NAMESPACE
  value: {{ include "kassette.cassandraNamespace" . | quote }}
{{- with .Values.discovery.podSelector }}
- name: KASSETTE_POD_SELECTOR
  value: {{ . | quote }}
{{- end }}
- name: KASSETTE_AGENT_PORT
  value: {{ .Values.agent.port | int | quote }}
- name: KASSETTE_AGENT_TOKEN_FILE
  value: {{ printf "%s/token" $paths.agentToken | quote }}
{{- if .Values.agent.tls.enabled }}
- name: KASSETTE_AGENT_CA_FILE
  value: {{ printf "%s/ca.crt" $paths.agentTls | quote }}
{{- with .Values.agent.tls.serverName }}
- name: KASSETTE_AGENT_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
- name: KASSETTE_CQL_PORT
  value: {{ .Values.cql.port | int | quote }}
{{- if .Values.cql.existingSecret }}
- name: KASSETTE_CQL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.cql.existingSecret | quote }}
      key: username
- name: KASSETTE_CQL_PASSWORD_FILE
  value: {{ printf "%s/password" $paths.cql | quote }}
{{- end }}
- name: KASSETTE_STORAGE_PROVIDER
  value: {{ $s.provider | quote }}
{{- with $s.bucket }}
- name: KASSETTE_STORAGE_BUCKET
  value: {{ . | quote }}
{{- end }}
{{- if eq $s.provider "local" }}
- name: KASSETTE_STORAGE_PATH
  value: {{ $s.path | quote }}
{{- end }}
{{- with $s.prefix }}
- name: KASSETTE_STORAGE_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- with $s.endpoint }}
- name: KASSETTE_STORAGE_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if $s.allowHttp }}
- name: KASSETTE_STORAGE_ALLOW_HTTP
  value: "true"
{{- end }}
{{- with $s.region }}
- name: KASSETTE_STORAGE_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $s.account }}
- name: KASSETTE_STORAGE_ACCOUNT
  value: {{ . | quote }}
{{- end }}
{{- if $s.existingSecret }}
- name: KASSETTE_STORAGE_CREDENTIALS_FILE
  {{- if $s.existingSecretKey }}
  value: {{ printf "%s/%s" $paths.storage $s.existingSecretKey | quote }}
  {{- else }}
  value: {{ $paths.storage | quote }}
  {{- end }}
{{- end }}
{{- if or $s.caBundle.secret $s.caBundle.configMap }}
- name: KASSETTE_STORAGE_CA_BUNDLE
  value: {{ printf "%s/%s" $paths.storageCa $s.caBundle.key | quote }}
{{- end }}
{{- with $s.storageClass }}
- name: KASSETTE_STORAGE_CLASS
  value: {{ . | quote }}
{{- end }}
{{- with $s.sse.kmsKeyId }}
- name: KASSETTE_STORAGE_SSE_KMS_KEY_ID
  value: {{ . | quote }}
{{- end }}
{{- if $s.sse.customerKeySecret }}
- name: KASSETTE_STORAGE_SSE_C_KEY_FILE
  value: {{ printf "%s/%s" $paths.sseC $s.sse.customerKeySecretKey | quote }}
{{- end }}
- name: KASSETTE_CONCURRENCY
  value: {{ $s.concurrency | int | quote }}
{{- with $s.maxBandwidth }}
- name: KASSETTE_MAX_BANDWIDTH
  value: {{ . | quote }}
{{- end }}
{{- with .Values.pass.lockTtl }}
- name: KASSETTE_LOCK_TTL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.pass.progressInterval }}
- name: KASSETTE_PROGRESS_INTERVAL
  value: {{ . | quote }}
{{- end }}
- name: KASSETTE_LOG
  value: {{ .Values.log.level | quote }}
- name: KASSETTE_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- include "kassette.roleEnv" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kassette.volumeMounts" -}}
{{- $paths := include "kassette.paths" . | fromYaml }}
{{- $s := .Values.storage }}
- name: tmp
  mountPath: /tmp
- name: agent-token
  mountPath: {{ $paths.agentToken }}
  readOnly: true
{{- if .Values.agent.tls.enabled }}
- name: agent-tls
  mountPath: {{ $paths.agentTls }}
  readOnly: true
{{- end }}
{{- if .Values.cql.existingSecret }}
- name: cql
  mountPath: {{ $paths.cql }}
  readOnly: true
{{- end }}
{{- if $s.existingSecret }}
- name: storage-credentials
  mountPath: {{ $paths.storage }}
  readOnly: true
{{- end }}
{{- if or $s.caBundle.secret $s.caBundle.configMap }}
- name: storage-ca
  mountPath: {{ $paths.storageCa }}
  readOnly: true
{{- end }}
{{- if $s.sse.customerKeySecret }}
- name: sse-c
  mountPath: {{ $paths.sseC }}
  readOnly: true
{{- end }}
{{- if and (eq $s.provider "local") $s.existingClaim }}
- name: backups
  mountPath: {{ $s.path }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- /* Secret files are read by the container's one user (65532 by
default), whatever fsGroup is set: mode 0444. Only the keys the
coordinator needs are projected (never the agents' private key). */ -}}
{{- define "kassette.volumes" -}}
{{- $s := .Values.storage }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: agent-token
  secret:
    secretName: {{ .Values.agent.tokenSecret | quote }}
    defaultMode: 0444
    items:
      - key: token
        path: token
{{- if .Values.agent.tls.enabled }}
- name: agent-tls
  secret:
    secretName: {{ .Values.agent.tls.caSecret | quote }}
    defaultMode: 0444
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if .Values.cql.existingSecret }}
- name: cql
  secret:
    secretName: {{ .Values.cql.existingSecret | quote }}
    defaultMode: 0444
    items:
      - key: password
        path: password
{{- end }}
{{- if $s.existingSecret }}
- name: storage-credentials
  secret:
    secretName: {{ $s.existingSecret | quote }}
    defaultMode: 0444
{{- end }}
{{- if $s.caBundle.secret }}
- name: storage-ca
  secret:
    secretName: {{ $s.caBundle.secret | quote }}
    defaultMode: 0444
    items:
      - key: {{ $s.caBundle.key | quote }}
        path: {{ $s.caBundle.key | quote }}
{{- else if $s.caBundle.configMap }}
- name: storage-ca
  configMap:
    name: {{ $s.caBundle.configMap | quote }}
    items:
      - key: {{ $s.caBundle.key | quote }}
        path: {{ $s.caBundle.key | quote }}
{{- end }}
{{- if $s.sse.customerKeySecret }}
- name: sse-c
  secret:
    secretName: {{ $s.sse.customerKeySecret | quote }}
    defaultMode: 0444
    items:
      - key: {{ $s.sse.customerKeySecretKey | quote }}
        path: {{ $s.sse.customerKeySecretKey | quote }}
{{- end }}
{{- if and (eq $s.provider "local") $s.existingClaim }}
- name: backups
  persistentVolumeClaim:
    claimName: {{ $s.existingClaim | quote }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- /* The Job's pod template. restartPolicy Never: each retry is a new pod
whose logs stay readable. */ -}}
{{- define "kassette.podTemplate" -}}
metadata:
  labels:
    {{- include "kassette.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "kassette.serviceAccountName" . }}
  automountServiceAccountToken: true
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    {{- if kindIs "string" . }}
    - name: {{ . | quote }}
    {{- else }}
    - {{ toYaml . | nindent 6 | trim }}
    {{- end }}
    {{- end }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: kassette
      image: {{ include "kassette.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - {{ include "kassette.role" . }}
      env:
        {{- include "kassette.env" . | trim | nindent 8 }}
      volumeMounts:
        {{- include "kassette.volumeMounts" . | trim | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  volumes:
    {{- include "kassette.volumes" . | trim | nindent 4 }}
{{- end }}

{{- /* The Job's spec without its template. A configuration error (exit 2)
fails the Job at once: retrying cannot fix it. */ -}}
{{- define "kassette.jobSpec" -}}
backoffLimit: {{ .Values.job.backoffLimit | int }}
{{- if not (kindIs "invalid" .Values.job.activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ .Values.job.activeDeadlineSeconds | int64 }}
{{- end }}
{{- if not (kindIs "invalid" .Values.job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ .Values.job.ttlSecondsAfterFinished | int }}
{{- end }}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: kassette
        operator: In
        values: [2]
template:
  {{- include "kassette.podTemplate" . | nindent 2 }}
{{- end }}

{{- /* The Role: exactly what the coordinator calls. Discovery lists the
Cassandra pods; the Events reporter gets its own pod (to find its Job) and
creates core/v1 Events. */ -}}
{{- define "kassette.rbac" -}}
{{- if .Values.rbac.create }}
{{- $cassandraNs := include "kassette.cassandraNamespace" . }}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "kassette.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "kassette.labels" . | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "kassette.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "kassette.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "kassette.fullname" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "kassette.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- if ne $cassandraNs .Release.Namespace }}
---
# Discovery in the Cassandra pods' own namespace.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "kassette.fullname" . }}
  namespace: {{ $cassandraNs }}
  labels:
    {{- include "kassette.labels" . | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "kassette.fullname" . }}
  namespace: {{ $cassandraNs }}
  labels:
    {{- include "kassette.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "kassette.fullname" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "kassette.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kassette.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "kassette.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "kassette.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
