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
{{- end }}
