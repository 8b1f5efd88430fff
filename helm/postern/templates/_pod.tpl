{{/*
The pod template of the StatefulSet (file spool) and of the Deployment
(database mode): one definition, so both run the same container. Kept at
the indentation it has under "template:" (include it without nindent).
*/}}
{{- define "postern.pod" }}
{{- $v := .Values }}
{{- $fullname := include "postern.fullname" . }}
{{- $smtps := include "postern.smtps" . }}
{{- $smtpUsers := include "postern.smtpUsers" . }}
{{- $hostname := include "postern.hostname" . }}
{{- $secret := include "postern.secretName" . }}
{{- $keys := $v.existingSecretKeys }}
{{- $existing := not (empty $v.existingSecret) }}
{{- $database := include "postern.database" . }}
{{- $db := $v.database }}
    metadata:
      labels:
        {{- include "postern.labels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- if not $existing }}
        checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
        {{- end }}
        checksum/routes: {{ include (print $.Template.BasePath "/routes.yaml") . | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "postern.serviceAccountName" . }}
      # Postern never talks to the Kubernetes API.
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      # Above preStopSleepSeconds + POSTERN_SHUTDOWN_GRACE, so in-flight DATA and POSTs can finish.
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: postern
          image: {{ include "postern.image" . | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: ["serve"]
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          ports:
            - name: smtp
              containerPort: 2525
              protocol: TCP
            {{- if $smtps }}
            - name: smtps
              containerPort: 4650
              protocol: TCP
            {{- end }}
            - name: http
              containerPort: 8080
              protocol: TCP
          env:
            - name: POSTERN_SMTP_LISTEN
              value: "{{ $v.bindAddress }}:2525"
            - name: POSTERN_HTTP_LISTEN
              value: "{{ $v.bindAddress }}:8080"
            {{- if $smtps }}
            - name: POSTERN_SMTPS_LISTEN
              value: "{{ $v.bindAddress }}:4650"
            {{- end }}
            - name: POSTERN_SPOOL_DIR
              value: /var/lib/postern
            - name: POSTERN_LOG_FORMAT
              value: {{ $v.log.format | quote }}
            - name: RUST_LOG
              value: {{ $v.log.level | quote }}
            - name: POSTERN_SHUTDOWN_GRACE
              value: {{ $v.shutdownGrace | quote }}
            {{- with $hostname }}
            - name: POSTERN_HOSTNAME
              value: {{ . | quote }}
            {{- end }}
            {{- if $v.devMode }}
            - name: POSTERN_DEV_MODE
              value: "true"
            {{- end }}
            {{- with $v.webhook.url }}
            - name: POSTERN_WEBHOOK_URL
              value: {{ . | quote }}
            {{- end }}
            {{- if $v.routes }}
            - name: POSTERN_ROUTES_FILE
              value: /etc/postern/routes/routes.json
            {{- end }}
            {{- if $v.tls.enabled }}
            - name: POSTERN_TLS_CERT
              value: /etc/postern/tls/tls.crt
            - name: POSTERN_TLS_KEY
              value: /etc/postern/tls/tls.key
            {{- end }}
            {{- if $smtpUsers }}
            - name: POSTERN_SMTP_USERS_FILE
              value: /etc/postern/smtp-users/users
            {{- end }}
            {{- with $v.events.url }}
            - name: POSTERN_EVENTS_URL
              value: {{ . | quote }}
            {{- end }}
            {{- if $database }}
            # The URL holds the database password: from a Secret, never a plain value.
            - name: POSTERN_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  {{- if $db.existingSecret }}
                  name: {{ $db.existingSecret }}
                  key: {{ $db.existingSecretKey }}
                  {{- else }}
                  name: {{ $secret }}
                  key: database-url
                  {{- end }}
            {{- end }}
            {{- if $db.ca.secretName }}
            - name: POSTERN_DATABASE_CA
              value: /etc/postern/database-ca/ca.pem
            {{- end }}
            {{- /* "" is a setting of its own here (no subaddresses), so only null is left out. */}}
            {{- if not (kindIs "invalid" $v.recipientDelimiter) }}
            - name: POSTERN_RECIPIENT_DELIMITER
              value: {{ $v.recipientDelimiter | quote }}
            {{- end }}
            {{- if $v.dkim.keys }}
            - name: POSTERN_DKIM_KEYS
              value: |-
                {{- include "postern.dkimKeys" . | nindent 16 }}
            {{- end }}
            {{- range list
                (list "POSTERN_WEBHOOK_SECRET" $keys.webhookSecret $v.webhook.secret)
                (list "POSTERN_API_KEYS" $keys.apiKeys $v.api.keys)
                (list "POSTERN_RELAY_URL" $keys.relayUrl $v.relay.url)
                (list "POSTERN_EVENTS_SECRET" $keys.eventsSecret $v.events.secret)
                (list "POSTERN_UI_USERS" $keys.uiUsers $v.console.users)
                (list "POSTERN_ATTACHMENT_URL_SECRET" $keys.attachmentUrlSecret $v.attachments.urlSecret) }}
            {{- if or $existing (index . 2) }}
            - name: {{ index . 0 }}
              valueFrom:
                secretKeyRef:
                  name: {{ $secret }}
                  key: {{ index . 1 }}
                  {{- if $existing }}
                  optional: true
                  {{- end }}
            {{- end }}
            {{- end }}
            {{- range list
                (list "POSTERN_WEBHOOK_TIMEOUT" $v.webhook.timeout)
                (list "POSTERN_WEBHOOK_CONNECT_TIMEOUT" $v.webhook.connectTimeout)
                (list "POSTERN_RETRY_SCHEDULE" $v.delivery.retrySchedule)
                (list "POSTERN_RETRY_JITTER" $v.delivery.retryJitter)
                (list "POSTERN_MAX_RETRY_AFTER" $v.delivery.maxRetryAfter)
                (list "POSTERN_DELIVERY_CONCURRENCY" $v.delivery.concurrency)
                (list "POSTERN_ENDPOINT_CONCURRENCY" $v.delivery.endpointConcurrency)
                (list "POSTERN_ENDPOINT_BREAKER_FAILURES" $v.delivery.breakerFailures)
                (list "POSTERN_ENDPOINT_BREAKER_COOLDOWN" $v.delivery.breakerCooldown)
                (list "POSTERN_DELIVERY_MEMORY" $v.delivery.memoryBudget)
                (list "POSTERN_STATUS_RETENTION" $v.delivery.statusRetention)
                (list "POSTERN_DEAD_RETENTION" $v.delivery.deadRetention)
                (list "POSTERN_HISTORY_RETENTION" $v.history.retention)
                (list "POSTERN_FSYNC" (ternary "" "false" $v.delivery.fsync))
                (list "POSTERN_SMTP_REQUIRE_TLS" (ternary "true" "" $v.smtp.requireTls))
                (list "POSTERN_SMTP_GREETING_DELAY" $v.smtp.greetingDelay)
                (list "POSTERN_SMTP_AUTH" $v.smtp.auth.mode)
                (list "POSTERN_SMTP_ALLOW_INSECURE_AUTH" (ternary "true" "" $v.smtp.auth.allowInsecure))
                (list "POSTERN_AUTH_MAX_FAILURES" $v.smtp.auth.maxFailures)
                (list "POSTERN_AUTH_FAILURE_WINDOW" $v.smtp.auth.failureWindow)
                (list "POSTERN_AUTH_FAILURE_DELAY" $v.smtp.auth.failureDelay)
                (list "POSTERN_MAX_MESSAGE_SIZE" $v.smtp.limits.maxMessageSize)
                (list "POSTERN_MAX_RECIPIENTS" $v.smtp.limits.maxRecipients)
                (list "POSTERN_MAX_LINE_LENGTH" $v.smtp.limits.maxLineLength)
                (list "POSTERN_MAX_ERRORS" $v.smtp.limits.maxErrors)
                (list "POSTERN_MAX_SESSIONS" $v.smtp.limits.maxSessions)
                (list "POSTERN_MAX_SESSIONS_PER_IP" $v.smtp.limits.maxSessionsPerIp)
                (list "POSTERN_SMTP_IDLE_TIMEOUT" $v.smtp.limits.idleTimeout)
                (list "POSTERN_SMTP_SESSION_TIMEOUT" $v.smtp.limits.sessionTimeout)
                (list "POSTERN_SMTP_MIN_DATA_RATE" $v.smtp.limits.minDataRate)
                (list "POSTERN_SMTP_DATA_RATE_GRACE" $v.smtp.limits.dataRateGrace)
                (list "POSTERN_SMTP_PROXY_PROTOCOL" $v.smtp.proxyProtocol.mode)
                (list "POSTERN_SMTP_PROXY_TRUSTED" (join "," $v.smtp.proxyProtocol.trusted))
                (list "POSTERN_SMTP_PROXY_TIMEOUT" $v.smtp.proxyProtocol.timeout)
                (list "POSTERN_TLS_RELOAD_INTERVAL" $v.tls.reloadInterval)
                (list "POSTERN_API_MAX_BYTES" $v.api.maxBytes)
                (list "POSTERN_DATABASE_POOL" $db.pool)
                (list "POSTERN_DATABASE_LEASE" $db.lease)
                (list "POSTERN_PUBLIC_URL" $v.publicUrl)
                (list "POSTERN_ATTACHMENT_URL_TTL" $v.attachments.urlTtl)
                (list "POSTERN_AUTH_CHECKS" (join "," $v.mailAuth.checks))
                (list "POSTERN_DNS_SERVERS" (join "," $v.mailAuth.dnsServers))
                (list "POSTERN_DNS_TIMEOUT" $v.mailAuth.dnsTimeout) }}
            {{- $val := index . 1 }}
            {{- if and (not (kindIs "invalid" $val)) (ne (toString $val) "") }}
            - name: {{ index . 0 }}
              value: {{ include "postern.envValue" $val | quote }}
            {{- end }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $v.extraEnvFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.probes.startup }}
          {{- if .enabled }}
          startupProbe:
            httpGet:
              path: {{ .path }}
              port: http
            periodSeconds: {{ .periodSeconds }}
            timeoutSeconds: {{ .timeoutSeconds }}
            failureThreshold: {{ .failureThreshold }}
          {{- end }}
          {{- end }}
          {{- with $v.probes.liveness }}
          {{- if .enabled }}
          livenessProbe:
            httpGet:
              path: {{ .path }}
              port: http
            periodSeconds: {{ .periodSeconds }}
            timeoutSeconds: {{ .timeoutSeconds }}
            failureThreshold: {{ .failureThreshold }}
          {{- end }}
          {{- end }}
          {{- with $v.probes.readiness }}
          {{- if .enabled }}
          readinessProbe:
            httpGet:
              path: {{ .path }}
              port: http
            periodSeconds: {{ .periodSeconds }}
            timeoutSeconds: {{ .timeoutSeconds }}
            failureThreshold: {{ .failureThreshold }}
            successThreshold: {{ .successThreshold }}
          {{- end }}
          {{- end }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $v.preStopSleepSeconds }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            - name: spool
              mountPath: /var/lib/postern
            - name: tmp
              mountPath: /tmp
            {{- if $v.routes }}
            - name: routes
              mountPath: /etc/postern/routes
              readOnly: true
            {{- end }}
            {{- if $v.tls.enabled }}
            # A directory mount (no subPath), so cert-manager rotations reach the pod.
            - name: tls
              mountPath: /etc/postern/tls
              readOnly: true
            {{- end }}
            {{- if $smtpUsers }}
            - name: smtp-users
              mountPath: /etc/postern/smtp-users
              readOnly: true
            {{- end }}
            {{- if $v.dkim.keys }}
            - name: dkim
              mountPath: /etc/postern/dkim
              readOnly: true
            {{- end }}
            {{- if $db.ca.secretName }}
            - name: database-ca
              mountPath: /etc/postern/database-ca
              readOnly: true
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if $database }}
        # Database mode: the store is PostgreSQL; the spool directory only holds
        # small local files (see the chart README, Database mode).
        - name: spool
          emptyDir:
            sizeLimit: {{ $db.spoolDirSizeLimit }}
        {{- else if not $v.persistence.enabled }}
        - name: spool
          emptyDir:
            sizeLimit: {{ $v.persistence.size }}
        {{- end }}
        {{- if $v.routes }}
        - name: routes
          {{- if include "postern.routesInSecret" . }}
          secret:
            secretName: {{ $fullname }}-routes
            defaultMode: 0440
          {{- else }}
          configMap:
            name: {{ $fullname }}-routes
            defaultMode: 0444
          {{- end }}
        {{- end }}
        {{- if $v.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ include "postern.tlsSecretName" . }}
            defaultMode: 0440
            items:
              - key: tls.crt
                path: tls.crt
              - key: tls.key
                path: tls.key
        {{- end }}
        {{- if $smtpUsers }}
        - name: smtp-users
          secret:
            secretName: {{ $secret }}
            defaultMode: 0440
            items:
              - key: {{ $keys.smtpUsers }}
                path: users
        {{- end }}
        {{- if $v.dkim.keys }}
        - name: dkim
          secret:
            secretName: {{ $v.dkim.existingSecret }}
            defaultMode: 0440
            items:
              {{- $files := list }}
              {{- range $v.dkim.keys }}{{ $files = append $files .key }}{{ end }}
              {{- /* one key may serve several domains; a path may appear only once */}}
              {{- range $files | uniq | sortAlpha }}
              - key: {{ . }}
                path: {{ . }}
              {{- end }}
        {{- end }}
        {{- if $db.ca.secretName }}
        - name: database-ca
          secret:
            secretName: {{ $db.ca.secretName }}
            defaultMode: 0440
            items:
              - key: {{ $db.ca.key }}
                path: ca.pem
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
