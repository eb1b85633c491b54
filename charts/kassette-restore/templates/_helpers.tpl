{{- /* kassette-restore's own part of the coordinator's configuration; the
shared part is in _kassette.tpl. */ -}}

{{- define "kassette.role" -}}restore{{- end }}

{{- /* Each entry starts on a new line, as the shared env list expects. */ -}}
{{- define "kassette.roleEnv" }}
- name: KASSETTE_BACKUP_NAME
  value: {{ required "backupName is required: a backup name, or latest" .Values.backupName | quote }}
{{- with .Values.keyspaces }}
- name: KASSETTE_KEYSPACES
  value: {{ include "kassette.csv" . | quote }}
{{- end }}
{{- with .Values.tables }}
- name: KASSETTE_TABLES
  value: {{ include "kassette.csv" . | quote }}
{{- end }}
- name: KASSETTE_RESTORE_MODE
  value: {{ .Values.mode | quote }}
{{- if .Values.clearTruncateSnapshots }}
- name: KASSETTE_CLEAR_TRUNCATE_SNAPSHOTS
  value: "true"
{{- end }}
{{- with .Values.source.cluster }}
- name: KASSETTE_SOURCE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.source.datacenter }}
- name: KASSETTE_SOURCE_DATACENTER
  value: {{ . | quote }}
{{- end }}
{{- if .Values.repairAfterRestore }}
- name: KASSETTE_REPAIR_AFTER_RESTORE
  value: "true"
{{- end }}
{{- if .Values.dryRun }}
- name: KASSETTE_DRY_RUN
  value: "true"
{{- end }}
{{- end }}
