{{- define "iotlm.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "iotlm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "iotlm.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

{{- define "iotlm.labels" -}}
app.kubernetes.io/name: {{ include "iotlm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "iotlm.selector" -}}
app.kubernetes.io/name: {{ include "iotlm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A component's container: the shared settings, and only its own passwords (deploy/provision.py). */}}
{{- define "iotlm.env" -}}
- name: IOTLM_SECURITY__PASSWORDS
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.components }}
      key: {{ .passwords }}.json
{{- end -}}

{{- define "iotlm.pod" -}}
securityContext: {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The settings every component shares (IOTLM_* environment, iotlm/settings.py), one place for the
ConfigMap and for the provision hook (which runs before the release's ConfigMap exists). */}}
{{- define "iotlm.settings" -}}
IOTLM_STATE_DIR: /var/lib/iotlm
IOTLM_STACK__KAFKA_HOST: {{ .Values.services.kafka.host | quote }}
IOTLM_STACK__KAFKA_PORT: {{ .Values.services.kafka.port | quote }}
IOTLM_STACK__POSTGRES_HOST: {{ .Values.services.postgres.host | quote }}
IOTLM_STACK__POSTGRES_PORT: {{ .Values.services.postgres.port | quote }}
IOTLM_STACK__POSTGRES_DB: {{ .Values.services.postgres.database | quote }}
IOTLM_STACK__POSTGRES_USER: {{ .Values.services.postgres.owner | quote }}
IOTLM_STACK__REDIS_HOST: {{ .Values.services.redis.host | quote }}
IOTLM_STACK__REDIS_PORT: {{ .Values.services.redis.port | quote }}
IOTLM_STACK__MQTT_HOST: {{ .Values.services.mqtt.host | quote }}
IOTLM_STACK__MQTT_PORT: {{ .Values.services.mqtt.port | quote }}
IOTLM_WORKERS__METRICS_HOST: "0.0.0.0"
IOTLM_WORKERS__METRICS_PORT: {{ .Values.worker.metricsPort | quote }}
IOTLM_WORKERS__CONSUMER_GROUP: {{ .Values.worker.autoscaling.consumerGroup | quote }}
IOTLM_INGEST__ADMISSION: registry
{{- range $name, $value := .Values.settings }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}
