{{- /* kassette-backup's own part of the coordinator's configuration; the
shared part is in _kassette.tpl. */ -}}

{{- define "kassette.role" -}}backup{{- end }}

{{- define "kassette.roleEnv" -}}
{{- with .Values.backupName }}
- name: KASSETTE_BACKUP_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.keyspaces }}
- name: KASSETTE_KEYSPACES
  value: {{ include "kassette.csv" . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.retention.keepLast) }}
- name: KASSETTE_RETENTION_KEEP_LAST
  value: {{ .Values.retention.keepLast | int | quote }}
{{- end }}
{{- with .Values.retention.maxAge }}
- name: KASSETTE_RETENTION_MAX_AGE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.metrics.pushgatewayUrl }}
- name: KASSETTE_PUSHGATEWAY_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
