{{/* Names, labels and the pod pieces every RealChat workload shares. */}}

{{/* The release's base name: "realchat" for a release named realchat (or realchat-*). */}}
{{- define "realchat.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* One component's object name, e.g. realchat-gateway. Call with (list $ "gateway"), or
(list $ "") for what every component shares (the ConfigMap, the ServiceAccount). */}}
{{- define "realchat.name" -}}
{{- if index . 1 -}}
{{- printf "%s-%s" (include "realchat.fullname" (index . 0)) (index . 1) -}}
{{- else -}}
{{- include "realchat.fullname" (index . 0) -}}
{{- end -}}
{{- end -}}

{{- define "realchat.secretsName" -}}
{{- .Values.secrets.name | default (printf "%s-secrets" (include "realchat.fullname" .)) -}}
{{- end -}}

{{- define "realchat.signingKeyName" -}}
{{- .Values.secrets.signingKeyName | default (printf "%s-signing-key" (include "realchat.fullname" .)) -}}
{{- end -}}

{{- define "realchat.configName" -}}
{{- printf "%s-config" (include "realchat.fullname" .) -}}
{{- end -}}

{{- define "realchat.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Selector labels of a component. Call with (list $ "gateway"). */}}
{{- define "realchat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "realchat.name" . }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end -}}

{{/* Labels of every object. Call with (list $ "gateway"). */}}
{{- define "realchat.labels" -}}
{{ include "realchat.selectorLabels" . }}
{{- with index . 1 }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: realchat
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
{{- end -}}

{{/* An environment variable read from a Secret's key. Call with (dict "env" NAME "name" SECRET "key" KEY). */}}
{{- define "realchat.secretEnv" -}}
- name: {{ .env }}
  valueFrom: {secretKeyRef: {name: {{ .name }}, key: {{ .key }}}}
{{- end -}}

{{- define "realchat.databaseUrlEnv" -}}
{{ include "realchat.secretEnv" (dict "env" "REALCHAT_DATABASE__URL" "name" (.Values.database.urlSecret.name | default (include "realchat.secretsName" .)) "key" .Values.database.urlSecret.key) }}
{{- end -}}

{{- define "realchat.redisUrlEnv" -}}
{{ include "realchat.secretEnv" (dict "env" "REALCHAT_REDIS__URL" "name" (.Values.redis.urlSecret.name | default (include "realchat.secretsName" .)) "key" .Values.redis.urlSecret.key) }}
{{- end -}}

{{- define "realchat.internalTokenEnv" -}}
{{ include "realchat.secretEnv" (dict "env" "REALCHAT_CHAT__INTERNAL_TOKEN" "name" (include "realchat.secretsName" .) "key" "chat-internal-token") }}
{{- end -}}

{{/* The pod-level part every workload shares: no API token, uid 10001, pull secrets. */}}
{{- define "realchat.podSpec" -}}
serviceAccountName: {{ include "realchat.fullname" . }}
securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The container-level part: the image, the ConfigMap, no privilege, a read-only root. */}}
{{- define "realchat.container" -}}
image: {{ include "realchat.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom: [{configMapRef: {name: {{ include "realchat.configName" . }}}}]
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* Readiness and liveness on the ops port (named "ops"). Called with true for the gateways,
whose /readyz turns 503 the moment draining starts: checked often, out at the first failure. */}}
{{- define "realchat.probes" -}}
readinessProbe: {httpGet: {path: /readyz, port: ops}, {{ if . }}periodSeconds: 2, failureThreshold: 1{{ else }}periodSeconds: 5{{ end }}}
livenessProbe: {httpGet: {path: /healthz, port: ops}, periodSeconds: 10, failureThreshold: 3}
{{- end -}}

{{/* A PodDisruptionBudget for a component. Call with (list $ "gateway"). */}}
{{- define "realchat.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "realchat.name" . }}
  labels: {{- include "realchat.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ (index . 0).Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels: {{- include "realchat.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* The signing key volume: the whole pair for auth, only the public key for the others. */}}
{{- define "realchat.keysVolume" -}}
- name: keys
  secret:
    secretName: {{ include "realchat.signingKeyName" (index . 0) }}
    defaultMode: 0440
    {{- if not (index . 1) }}
    items: [{key: auth-signing-key.pub.pem, path: auth-signing-key.pub.pem}]
    {{- end }}
{{- end -}}

{{/* The suffix of the Job names: a new image or chart makes new Jobs (a Job's pod template is
immutable), the same ones leave them alone. */}}
{{- define "realchat.jobSuffix" -}}
{{- printf "%s/%s" (include "realchat.image" .) .Chart.Version | sha256sum | trunc 8 -}}
{{- end -}}
