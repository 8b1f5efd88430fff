{{/* Names */}}
{{- define "postern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postern.fullname" -}}
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

{{- define "postern.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "postern.labels" -}}
helm.sh/chart: {{ include "postern.chart" . }}
{{ include "postern.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "postern.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "postern.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "postern.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret holding webhook secret, API keys, relay URL, events secret, SMTP users. */}}
{{- define "postern.secretName" -}}
{{- default (include "postern.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "postern.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "postern.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* "true" when the implicit-TLS listener runs. */}}
{{- define "postern.smtps" -}}
{{- if and .Values.tls.enabled .Values.tls.smtps }}true{{ end }}
{{- end }}

{{/* "true" when a route carries its own secret: routes then go to a Secret, not a ConfigMap. */}}
{{- define "postern.routesInSecret" -}}
{{- range .Values.routes }}{{ if hasKey . "secret" }}true{{ end }}{{ end }}
{{- end }}

{{/* "true" when the SMTP users file is mounted. */}}
{{- define "postern.smtpUsers" -}}
{{- if or .Values.smtp.auth.users (and .Values.existingSecret (has .Values.smtp.auth.mode (list "optional" "required"))) }}true{{ end }}
{{- end }}

{{/* "true" in database mode (PostgreSQL store): a Deployment instead of the StatefulSet. */}}
{{- define "postern.database" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/* The StatefulSet's or Deployment's annotations (include without nindent, under "annotations:"). */}}
{{- define "postern.workloadAnnotations" }}
    {{- if include "postern.database" . }}
    # Postern reads its webhook secret, API keys, relay URL, events secret and
    # database URL from environment variables only (no *_FILE form); they come
    # from a Secret by reference.
    {{- else }}
    # Postern reads its webhook secret, API keys, relay URL and events secret from
    # environment variables only (no *_FILE form); they come from a Secret by reference.
    {{- end }}
    checkov.io/skip1: CKV_K8S_35=Postern takes these secrets only as environment variables
    {{- if not .Values.image.digest }}
    # The image is pinned by tag (the chart's appVersion); set image.digest to pin it by digest.
    checkov.io/skip2: CKV_K8S_43=image pinned by release tag unless image.digest is set
    {{- end }}
{{- end }}

{{/* The workload's kind, for the HPA, NOTES and kubectl hints. */}}
{{- define "postern.kind" -}}
{{- if include "postern.database" . }}Deployment{{ else }}StatefulSet{{ end }}
{{- end }}

{{/*
POSTERN_DKIM_KEYS: domain → {selector, key_file}, or a list of them when a
domain has several selectors; the files are the dkim Secret's keys mounted
under /etc/postern/dkim.
*/}}
{{- define "postern.dkimKeys" -}}
{{- $byDomain := dict }}
{{- range .Values.dkim.keys }}
{{- $entry := dict "selector" .selector "key_file" (printf "/etc/postern/dkim/%s" .key) }}
{{- $_ := set $byDomain .domain (append (get $byDomain .domain | default list) $entry) }}
{{- end }}
{{- $out := dict }}
{{- range $domain, $entries := $byDomain }}
{{- $_ := set $out $domain (ternary (first $entries) $entries (eq (len $entries) 1)) }}
{{- end }}
{{- toPrettyJson $out }}
{{- end }}

{{- define "postern.hostname" -}}
{{- if .Values.hostname }}
{{- .Values.hostname }}
{{- else if and .Values.tls.enabled .Values.tls.certificate.create .Values.tls.certificate.dnsNames }}
{{- first .Values.tls.certificate.dnsNames }}
{{- end }}
{{- end }}

{{/* An env value as Postern reads it: whole numbers without exponent, the rest as text. */}}
{{- define "postern.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* A duration such as 25s, 2m or 1m30s, in whole seconds (only s, m and h are understood). */}}
{{- define "postern.seconds" -}}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+[hms]" (toString .) -1 }}
{{- $n := int (trimSuffix "h" (trimSuffix "m" (trimSuffix "s" .))) }}
{{- if hasSuffix "h" . }}{{ $total = add $total (mul $n 3600) }}
{{- else if hasSuffix "m" . }}{{ $total = add $total (mul $n 60) }}
{{- else }}{{ $total = add $total $n }}{{ end }}
{{- end }}
{{- $total }}
{{- end }}

{{/* Port of an http(s) URL (explicit, else 443/80); empty when it cannot be told. */}}
{{- define "postern.urlPort" -}}
{{- $authority := regexReplaceAll "^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*).*$" . "${1}" }}
{{- $hostport := regexReplaceAll "^.*@" $authority "" }}
{{- if regexMatch ":[0-9]+$" $hostport }}
{{- regexFind "[0-9]+$" $hostport }}
{{- else if hasPrefix "https://" (lower .) }}443
{{- else if hasPrefix "http://" (lower .) }}80
{{- end }}
{{- end }}

{{/* Checks that fail the install with a message instead of a crash-looping pod. */}}
{{- define "postern.validate" -}}
{{- $v := .Values }}
{{- if and (not $v.devMode) (not $v.webhook.url) (not $v.routes) }}
{{- fail "\n\nPostern needs somewhere to deliver mail: set webhook.url (one catch-all route) or routes (see the chart README),\nor devMode=true for a throwaway test install (accepts mail for anyone: never expose it)." }}
{{- end }}
{{- if and $v.webhook.url $v.routes }}
{{- fail "\n\nSet webhook.url or routes, not both: Postern ignores POSTERN_WEBHOOK_URL when routes are given.\nAdd {match: \"*\", url: ...} as the last route instead." }}
{{- end }}
{{- if not $v.devMode }}
{{- $needsDefault := not (empty $v.webhook.url) }}
{{- range $v.routes }}{{ if not (hasKey . "secret") }}{{ $needsDefault = true }}{{ end }}{{ end }}
{{- if and $needsDefault (not $v.webhook.secret) (not $v.existingSecret) }}
{{- fail "\n\nwebhook.secret is required: a route has no \"secret\" of its own.\nGenerate one with `postern gen-secret` (or use existingSecret with key webhook-secret)." }}
{{- end }}
{{- end }}
{{- if and $v.existingSecret (or $v.webhook.secret $v.api.keys $v.relay.url $v.events.secret $v.smtp.auth.users $v.attachments.urlSecret) }}
{{- fail "\n\nexistingSecret is set: leave webhook.secret, api.keys, relay.url, events.secret, smtp.auth.users and attachments.urlSecret empty (put them in the existing Secret)." }}
{{- end }}
{{- $database := include "postern.database" . }}
{{- if and $v.database.url $v.database.existingSecret }}
{{- fail "\n\nSet database.url or database.existingSecret (with database.existingSecretKey), not both." }}
{{- end }}
{{- if and $v.database.url $v.existingSecret }}
{{- fail "\n\nexistingSecret is set, so the chart renders no Secret for database.url: put the URL in a Secret and set database.existingSecret and database.existingSecretKey instead." }}
{{- end }}
{{- if and $v.database.existingSecret (not $v.database.existingSecretKey) }}
{{- fail "\n\ndatabase.existingSecret needs database.existingSecretKey: the key that holds the postgres:// URL (CloudNativePG's <cluster>-app: uri)." }}
{{- end }}
{{- if and (not $database) (or (not (kindIs "invalid" $v.database.pool)) $v.database.ca.secretName) }}
{{- fail "\n\ndatabase.pool and database.ca need database mode: set database.url or database.existingSecret." }}
{{- end }}
{{- if and $v.database.ca.secretName (not $v.database.ca.key) }}
{{- fail "\n\ndatabase.ca.secretName needs database.ca.key: the key of the PEM CA in that Secret (CloudNativePG's <cluster>-ca: ca.crt)." }}
{{- end }}
{{- if and (not $database) (gt (int $v.replicaCount) 1) }}
{{- fail (printf "\n\nreplicaCount=%d needs database mode (database.url or database.existingSecret).\nWith the file spool every pod owns its own mail: the API (GET /v1/messages, Idempotency-Key, /v1/deliveries)\nwould only see one pod's part, and a lost node strands what it accepted. Run 1 replica, or use PostgreSQL." (int $v.replicaCount)) }}
{{- end }}
{{- if and (not $database) $v.autoscaling.enabled }}
{{- fail "\n\nautoscaling.enabled needs database mode (database.url or database.existingSecret): file-spool pods cannot be added or removed freely." }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "\n\nautoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)." (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and $database $v.publicUrl (not $v.attachments.urlSecret) (not $v.existingSecret) }}
{{- fail "\n\npublicUrl in database mode needs attachments.urlSecret (or existingSecret with key attachment-url-secret):\nevery pod must sign attachment links with the same key, and a pod's own generated key is lost with the pod.\nGenerate one with e.g. `openssl rand -base64 32`." }}
{{- end }}
{{- if and (or $v.mailAuth.dnsServers $v.mailAuth.dnsTimeout) (not $v.mailAuth.checks) }}
{{- fail "\n\nmailAuth.dnsServers and mailAuth.dnsTimeout are only used by the checks: set mailAuth.checks (e.g. [spf, dkim, dmarc, arc]) or leave them empty." }}
{{- end }}
{{- range $v.routes }}
{{- if and .dmarc_reject (not (has "dmarc" $v.mailAuth.checks)) }}
{{- fail (printf "\n\nroute %q has dmarc_reject: true, which needs \"dmarc\" in mailAuth.checks (otherwise it never refuses anything)." (toString .match)) }}
{{- end }}
{{- if and (eq (toString .attachments) "url") (not $v.publicUrl) (not $v.devMode) }}
{{- fail (printf "\n\nroute %q sends attachments as links (attachments: url): set publicUrl, the base URL your apps reach Postern's HTTP API at." (toString .match)) }}
{{- end }}
{{- end }}
{{- if and $v.dkim.keys (not $v.dkim.existingSecret) }}
{{- fail "\n\ndkim.keys needs dkim.existingSecret: the Secret holding the private keys (kubectl create secret generic dkim --from-file=example.com.pem)." }}
{{- end }}
{{- if and $v.dkim.existingSecret (not $v.dkim.keys) }}
{{- fail "\n\ndkim.existingSecret is set but dkim.keys is empty: list the domain, selector and key (name in the Secret) of each key." }}
{{- end }}
{{- if and $v.events.url (not $v.events.secret) (not $v.webhook.secret) (not $v.existingSecret) (not $v.devMode) }}
{{- fail "\n\nevents.url needs events.secret or webhook.secret to sign the events." }}
{{- end }}
{{- if and (has $v.smtp.auth.mode (list "optional" "required")) (not $v.smtp.auth.users) (not $v.existingSecret) }}
{{- fail (printf "\n\nsmtp.auth.mode=%s needs smtp.auth.users (\"user:<argon2id hash>\", from `postern hash-password`)." $v.smtp.auth.mode) }}
{{- end }}
{{- if and (has $v.smtp.proxyProtocol.mode (list "v1" "v2" "auto")) (not $v.smtp.proxyProtocol.trusted) }}
{{- fail (printf "\n\nsmtp.proxyProtocol.mode=%s needs smtp.proxyProtocol.trusted: the load balancers' networks (e.g. 10.0.0.0/8).\nWhoever may send a PROXY header chooses the client address Postern believes." $v.smtp.proxyProtocol.mode) }}
{{- end }}
{{- if and $v.smtp.proxyProtocol.trusted (not (has $v.smtp.proxyProtocol.mode (list "v1" "v2" "auto"))) }}
{{- fail "\n\nsmtp.proxyProtocol.trusted is set but smtp.proxyProtocol.mode is off: set the mode (v1, v2 or auto) your load balancer sends, or leave trusted empty." }}
{{- end }}
{{- if and $v.smtp.requireTls (not $v.tls.enabled) }}
{{- fail "\n\nsmtp.requireTls refuses every plain session: it needs tls.enabled." }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.secretName) (not $v.tls.certificate.create) }}
{{- fail "\n\ntls.enabled needs tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key) or tls.certificate.create=true (cert-manager)." }}
{{- end }}
{{- if and $v.tls.certificate.create (or (not $v.tls.certificate.issuerRef.name) (not $v.tls.certificate.dnsNames)) }}
{{- fail "\n\ntls.certificate.create needs tls.certificate.issuerRef.name and tls.certificate.dnsNames." }}
{{- end }}
{{- $grace := int (include "postern.seconds" $v.shutdownGrace) }}
{{- $needed := add $grace (int $v.preStopSleepSeconds) }}
{{- if le (int $v.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "\n\nterminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + shutdownGrace (%d s), or Kubernetes kills Postern before in-flight mail is finished." (int $v.terminationGracePeriodSeconds) $needed) }}
{{- end }}
{{- end }}
