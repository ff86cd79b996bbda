{{/* Common names and labels. */}}
{{- define "detector.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "detector.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "detector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "detector.secretName" -}}
{{- if .Values.secrets.existingSecret -}}{{ .Values.secrets.existingSecret }}{{- else -}}{{ include "detector.fullname" . }}{{- end -}}
{{- end -}}

{{- define "detector.stateClaim" -}}
{{- if .Values.persistence.existingClaim -}}{{ .Values.persistence.existingClaim }}{{- else -}}{{ include "detector.fullname" . }}-state{{- end -}}
{{- end -}}

{{/* Fail-over needs every replica to read the same checkpoints: refuse settings that cannot give that. */}}
{{- define "detector.checkPersistence" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if not .Values.persistence.enabled -}}
{{- fail "replicaCount > 1 needs persistence.enabled: replicas share one state volume for fail-over" -}}
{{- end -}}
{{- if and (not .Values.persistence.existingClaim) (ne .Values.persistence.accessMode "ReadWriteMany") -}}
{{- fail "replicaCount > 1 needs persistence.accessMode ReadWriteMany (one state volume all replicas mount); or set replicaCount 1" -}}
{{- end -}}
{{- end -}}
{{- end -}}
