{{/* Chart name, truncated to a DNS label. */}}
{{- define "tflock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "tflock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tflock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tflock.labels" -}}
helm.sh/chart: {{ include "tflock.chart" . }}
{{ include "tflock.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tflock
{{- end }}

{{- define "tflock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tflock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The bot's pods only: the migration Job's pods share name/instance but must not be selected. */}}
{{- define "tflock.botSelectorLabels" -}}
{{ include "tflock.selectorLabels" . }}
app.kubernetes.io/component: bot
{{- end }}

{{- define "tflock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tflock.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tflock.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding Slack credentials and the database URL: the operator's, or the one this chart renders. */}}
{{- define "tflock.secretName" -}}
{{- default (include "tflock.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "tflock.renderSecret" -}}
{{- if not .Values.secrets.existingSecret }}true{{ end }}
{{- end }}

{{- define "tflock.backendsConfigMap" -}}
{{- if .Values.backendsFile.existingConfigMap }}
{{- .Values.backendsFile.existingConfigMap }}
{{- else if .Values.backendsFile.backends }}
{{- printf "%s-backends" (include "tflock.fullname" .) }}
{{- end }}
{{- end }}

{{- define "tflock.sqlitePath" -}}/var/lib/tflock/tflock.db{{- end }}

{{- define "tflock.migrationsJob" -}}
{{- if and .Values.migrations.enabled (not .Values.database.sqlite.enabled) }}true{{ end }}
{{- end }}

{{/*
Cross-field rules the schema cannot say clearly; each failure names the value to set.
*/}}
{{- define "tflock.validate" -}}
{{- $s := .Values.secrets }}
{{- if $s.existingSecret }}
  {{- if or $s.botToken $s.signingSecret $s.appToken $s.databaseUrl $s.migrationDatabaseUrl }}
    {{- fail "secrets: existingSecret is set, so leave secrets.botToken, signingSecret, appToken, databaseUrl and migrationDatabaseUrl empty (the keys are read from the existing Secret; secrets.keys names them)" }}
  {{- end }}
{{- else }}
  {{- if not $s.botToken }}
    {{- fail "secrets.botToken is required (the xoxb-… bot token), or set secrets.existingSecret to a Secret you created" }}
  {{- end }}
  {{- if and (eq .Values.slack.mode "socket") (not $s.appToken) }}
    {{- fail "secrets.appToken is required in Socket Mode (the xapp-… app-level token with connections:write), or set slack.mode=http" }}
  {{- end }}
  {{- if and (eq .Values.slack.mode "http") (not $s.signingSecret) }}
    {{- fail "secrets.signingSecret is required in HTTP mode (Basic Information → Signing Secret in the Slack app)" }}
  {{- end }}
  {{- if and (not .Values.database.sqlite.enabled) (not $s.databaseUrl) }}
    {{- fail "secrets.databaseUrl is required (postgresql+psycopg://user:password@host:5432/tflock), or set database.sqlite.enabled=true for a single-replica trial" }}
  {{- end }}
  {{- if and .Values.database.sqlite.enabled $s.migrationDatabaseUrl }}
    {{- fail "secrets.migrationDatabaseUrl is for PostgreSQL: SQLite has no roles (leave it empty with database.sqlite.enabled)" }}
  {{- end }}
  {{- if and .Values.database.sqlite.enabled $s.databaseUrl }}
    {{- fail "secrets.databaseUrl and database.sqlite.enabled are both set: choose one audit database" }}
  {{- end }}
{{- end }}
{{- if and .Values.database.sqlite.enabled (gt (int .Values.replicaCount) 1) }}
  {{- fail "database.sqlite.enabled allows one replica only (one pod owns the SQLite file); use PostgreSQL (secrets.databaseUrl) for replicaCount > 1" }}
{{- end }}
{{- if and .Values.ingress.enabled (ne .Values.slack.mode "http") }}
  {{- fail "ingress.enabled needs slack.mode=http: Socket Mode connects out to Slack and needs no Ingress" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
  {{- fail "ingress.host is required when ingress.enabled (Slack's request URL is https://<host>/slack/events)" }}
{{- end }}
{{- end }}

{{/* Environment of the bot container: settings from values, credentials from the Secret. */}}
{{- define "tflock.env" -}}
{{- $secret := include "tflock.secretName" . }}
{{- $keys := .Values.secrets.keys }}
{{- $c := .Values.config -}}
- name: SLACK_BOT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.botToken }}
{{- if eq .Values.slack.mode "socket" }}
- name: SLACK_APP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.appToken }}
{{- else }}
- name: SLACK_SIGNING_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.signingSecret }}
{{- end }}
{{ include "tflock.databaseEnv" . }}
- name: TFLOCK_PORT
  value: {{ $c.port | quote }}
{{- with .Values.slack.apiUrl }}
- name: SLACK_API_URL
  value: {{ . | quote }}
{{- end }}
{{- with $c.awsRegion }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $c.dynamodbTable }}
- name: TFLOCK_DYNAMODB_TABLE
  value: {{ . | quote }}
{{- end }}
{{- with $c.s3Lockfile }}
- name: TFLOCK_S3_LOCKFILE
  value: {{ . | quote }}
{{- end }}
{{- with $c.s3Buckets }}
- name: TFLOCK_S3_BUCKETS
  value: {{ join "," . | quote }}
{{- end }}
{{- if include "tflock.backendsConfigMap" . }}
- name: TFLOCK_BACKENDS_FILE
  value: {{ printf "/etc/tflock/%s" .Values.backendsFile.key | quote }}
{{- end }}
{{- with $c.approvers }}
- name: TFLOCK_APPROVERS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $c.auditors }}
- name: TFLOCK_AUDITORS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $c.approvalsRequired }}
- name: TFLOCK_APPROVALS_REQUIRED
  value: {{ . | quote }}
{{- end }}
{{- with $c.requestTtl }}
- name: TFLOCK_REQUEST_TTL
  value: {{ . | quote }}
{{- end }}
{{- with $c.staleAfter }}
- name: TFLOCK_STALE_AFTER
  value: {{ . | quote }}
{{- end }}
{{- with $c.allowedChannels }}
- name: TFLOCK_ALLOWED_CHANNELS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $c.watchChannel }}
- name: TFLOCK_WATCH_CHANNEL
  value: {{ . | quote }}
{{- end }}
{{- with $c.watchInterval }}
- name: TFLOCK_WATCH_INTERVAL
  value: {{ . | quote }}
{{- end }}
{{- with $c.watchRemindAfter }}
- name: TFLOCK_WATCH_REMIND_AFTER
  value: {{ . | quote }}
{{- end }}
{{- with $c.holdRemindAfter }}
- name: TFLOCK_HOLD_REMIND_AFTER
  value: {{ . | quote }}
{{- end }}
{{- with $c.logLevel }}
- name: TFLOCK_LOG_LEVEL
  value: {{ . | quote }}
{{- end }}
{{- with $c.logFormat }}
- name: TFLOCK_LOG_FORMAT
  value: {{ . | quote }}
{{- end }}
{{- with $c.awsConnectTimeout }}
- name: TFLOCK_AWS_CONNECT_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with $c.awsReadTimeout }}
- name: TFLOCK_AWS_READ_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with $c.awsMaxAttempts }}
- name: TFLOCK_AWS_MAX_ATTEMPTS
  value: {{ . | quote }}
{{- end }}
{{- with $c.backendConcurrency }}
- name: TFLOCK_BACKEND_CONCURRENCY
  value: {{ . | quote }}
{{- end }}
{{- with $c.lookupQueue }}
- name: TFLOCK_LOOKUP_QUEUE
  value: {{ . | quote }}
{{- end }}
{{- with $c.clickQueue }}
- name: TFLOCK_CLICK_QUEUE
  value: {{ . | quote }}
{{- end }}
{{- with $c.dbConnectTimeout }}
- name: TFLOCK_DB_CONNECT_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with $c.dbStatementTimeout }}
- name: TFLOCK_DB_STATEMENT_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tflock.databaseEnv" -}}
- name: TFLOCK_DATABASE_URL
{{- if .Values.database.sqlite.enabled }}
  value: {{ printf "sqlite:///%s" (include "tflock.sqlitePath" .) | quote }}
{{- else if .Values.secrets.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.keys.databaseUrl }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "tflock.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
{{- end }}
{{- end }}
