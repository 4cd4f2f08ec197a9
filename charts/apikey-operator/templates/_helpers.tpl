{{/* Chart name, cut to 63 characters. */}}
{{- define "apikey-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "apikey-operator.fullname" -}}
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

{{- define "apikey-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "apikey-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "apikey-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apikey-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "apikey-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apikey-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "apikey-operator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The verifier's pods: another app name, so the operator Deployment's selector (unchanged since the first release) never matches them. */}}
{{- define "apikey-operator.verifierSelectorLabels" -}}
app.kubernetes.io/name: {{ include "apikey-operator.name" . }}-verifier
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Which pods serve the verifier. */}}
{{- define "apikey-operator.verifierPodLabels" -}}
{{- if .Values.verifier.separate }}
{{- include "apikey-operator.verifierSelectorLabels" . }}
{{- else }}
{{- include "apikey-operator.selectorLabels" . }}
{{- end }}
{{- end }}

{{- define "apikey-operator.verifierServiceAccountName" -}}
{{- if .Values.verifier.serviceAccount.create }}
{{- default (printf "%s-verifier" (include "apikey-operator.fullname" .)) .Values.verifier.serviceAccount.name }}
{{- else }}
{{- required "verifier.serviceAccount.name is required when verifier.serviceAccount.create is false" .Values.verifier.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the verifier serves HTTPS. */}}
{{- define "apikey-operator.verifierTLS" -}}
{{- if or .Values.verifier.tls.enabled .Values.verifier.tlsSecretName }}true{{ end }}
{{- end }}

{{/* "true" when the operator makes the verifier's certificate (no Secret of your own). */}}
{{- define "apikey-operator.verifierManagedTLS" -}}
{{- if and .Values.verifier.tls.enabled (not .Values.verifier.tlsSecretName) }}true{{ end }}
{{- end }}

{{/* The Secret the verifier's certificate is read from by a verifier that mounts it. */}}
{{- define "apikey-operator.verifierTLSSecret" -}}
{{- default (printf "%s-verifier-tls" (include "apikey-operator.fullname" .)) .Values.verifier.tlsSecretName }}
{{- end }}

{{/* "true" when the verifier reads its certificate from a mounted Secret: your own, or the operator's in a verifier Deployment (the operator's own process serves the one it makes directly). */}}
{{- define "apikey-operator.verifierTLSFiles" -}}
{{- if or .Values.verifier.tlsSecretName (and .Values.verifier.tls.enabled .Values.verifier.separate) }}true{{ end }}
{{- end }}

{{/* The verifier's flags, for whichever Deployment runs it. */}}
{{- define "apikey-operator.verifierArgs" -}}
- --verify-addr=0.0.0.0:{{ .Values.verifier.port }}
{{- if include "apikey-operator.verifierTLSFiles" . }}
- --verify-tls-cert=/etc/apikey-operator/tls/tls.crt
- --verify-tls-key=/etc/apikey-operator/tls/tls.key
{{- end }}
{{- if .Values.verifier.clientCA.configMapName }}
- --verify-client-ca=/etc/apikey-operator/client-ca/{{ .Values.verifier.clientCA.key }}
{{- end }}
{{- range .Values.verifier.extraGroups }}
- --extra-group={{ . }}
{{- end }}
{{- range .Values.verifier.headers }}
- --verify-header={{ . }}
{{- end }}
{{- range .Values.verifier.audiences }}
- --audience={{ . }}
{{- end }}
{{- end }}

{{/* The verifier's volumes (mounts with "mounts" true), for whichever Deployment runs it: its certificate when read from a Secret, the CA of its clients. */}}
{{- define "apikey-operator.verifierVolumes" -}}
{{- $ := .root }}
{{- $mounts := .mounts }}
{{- if include "apikey-operator.verifierTLSFiles" $ }}
{{- if $mounts }}
- name: verifier-tls
  mountPath: /etc/apikey-operator/tls
  readOnly: true
{{- else }}
- name: verifier-tls
  secret:
    secretName: {{ include "apikey-operator.verifierTLSSecret" $ }}
    # Only the serving pair: the operator's Secret also holds its CA's key.
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- with $.Values.verifier.clientCA.configMapName }}
{{- if $mounts }}
- name: client-ca
  mountPath: /etc/apikey-operator/client-ca
  readOnly: true
{{- else }}
- name: client-ca
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}
{{- end }}
