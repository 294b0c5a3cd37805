{{/* Names, labels and the polyroute config the chart renders. */}}

{{- define "polyroute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "polyroute.fullname" -}}
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

{{- define "polyroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "polyroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "polyroute.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "polyroute.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "polyroute.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret that holds POLYROUTE_ADMIN_KEY and the provider keys. */}}
{{- define "polyroute.secretName" -}}
{{- default (printf "%s-keys" (include "polyroute.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* A secret value given in values, else the one already in the cluster, else a new one. */}}
{{- define "polyroute.keep" -}}
{{- $given := index . 0 -}}{{- $secret := index . 1 -}}{{- $key := index . 2 -}}{{- $ns := index . 3 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $old := lookup "v1" "Secret" $ns $secret -}}
{{- if and $old (hasKey $old.data $key) -}}
{{- index $old.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "polyroute.postgresName" -}}
{{- printf "%s-postgres" (include "polyroute.fullname" .) -}}
{{- end -}}

{{- define "polyroute.redisName" -}}
{{- printf "%s-redis" (include "polyroute.fullname" .) -}}
{{- end -}}

{{- define "polyroute.engineName" -}}
{{- printf "%s-engine-%s" (include "polyroute.fullname" .root) .engine.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "polyroute.resultsClaim" -}}
{{- default (printf "%s-results" (include "polyroute.fullname" .)) .Values.jobs.results.existingClaim -}}
{{- end -}}

{{/*
polyroute's config (docs/config.md): what the chart knows (address, store, auth, engines)
under what the user gave in .Values.config, which wins key by key.
*/}}
{{- define "polyroute.config" -}}
{{- $v := .Values -}}
{{- $server := dict "host" "0.0.0.0" "port" (int $v.gateway.port) -}}
{{- $store := dict "journal_dir" "/data/journal" -}}
{{- if $v.postgres.enabled -}}
{{- $_ := set $store "database_url" (printf "postgresql+psycopg://%s@%s:5432/%s" $v.postgres.user (include "polyroute.postgresName" .) $v.postgres.database) -}}
{{- else if $v.externalDatabase.url -}}
{{- $_ := set $store "database_url" $v.externalDatabase.url -}}
{{- else -}}
{{- $_ := set $store "database_url" "sqlite:////data/polyroute.db" -}}
{{- end -}}
{{- $base := dict "server" $server "store" $store "weights" (dict "dir" "/data/weights") -}}
{{- if not $v.auth.enabled -}}
{{- $_ := set $base "auth" "none" -}}
{{- else if or $v.postgres.enabled $v.externalDatabase.url -}}
{{/* Replicas share one database: count RPM/TPM there, not per process. */}}
{{- $_ := set $base "auth" (dict "rate_limits" "database") -}}
{{- end -}}
{{- $user := deepCopy (default dict $v.config) -}}
{{- $providers := deepCopy (default dict $user.providers) -}}
{{- $models := list -}}
{{- range (default list $user.models) -}}{{- $models = append $models . -}}{{- end -}}
{{- range $e := $v.engines -}}
{{- $url := printf "http://%s:%d/v1" (include "polyroute.engineName" (dict "root" $ "engine" $e)) (int (default 8000 $e.port)) -}}
{{- $_ := set $providers (printf "engine-%s" $e.name) (dict "api" "openai" "base_url" $url) -}}
{{- $m := dict "name" $e.name "provider" (printf "engine-%s" $e.name) "upstream_model" $e.model -}}
{{- if hasKey $e "inputPrice" -}}{{- $_ := set $m "input_price" $e.inputPrice -}}{{- end -}}
{{- if hasKey $e "outputPrice" -}}{{- $_ := set $m "output_price" $e.outputPrice -}}{{- end -}}
{{- $m = mergeOverwrite $m (deepCopy (default dict $e.model_config)) -}}
{{- $models = append $models $m -}}
{{- end -}}
{{- $_ := unset $user "providers" -}}
{{- $_ := unset $user "models" -}}
{{- $config := mergeOverwrite $base $user -}}
{{- if $providers -}}{{- $_ := set $config "providers" $providers -}}{{- end -}}
{{- if $models -}}{{- $_ := set $config "models" $models -}}{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Environment shared by the gateway and the Jobs: keys, database password, Redis. */}}
{{- define "polyroute.env" -}}
- name: HOME
  value: /data
- name: POLYROUTE_WEIGHTS_DIR
  value: /data/weights
{{- if .Values.postgres.enabled }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "polyroute.postgresName" . }}
      key: password
{{- else if and .Values.externalDatabase.url .Values.externalDatabase.passwordSecret.name }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.passwordSecret.name }}
      key: {{ .Values.externalDatabase.passwordSecret.key }}
{{- end }}
{{- if .Values.redis.enabled }}
- name: POLYROUTE_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "polyroute.redisName" .) | quote }}
{{- else if .Values.externalRedis.url }}
- name: POLYROUTE_REDIS_URL
  value: {{ .Values.externalRedis.url | quote }}
{{- end }}
{{- end -}}
