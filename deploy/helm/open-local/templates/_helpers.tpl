{{/* Common labels. */}}
{{- define "open-local.labels" -}}
app.kubernetes.io/name: open-local
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The Open-Local image. */}}
{{- define "open-local.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* A sidecar image: include "open-local.sidecar" (list . "provisioner"). */}}
{{- define "open-local.sidecar" -}}
{{- $root := index . 0 -}}
{{- $s := index $root.Values.sidecars (index . 1) -}}
{{ $root.Values.sidecars.registry }}/{{ $s.image }}:{{ $s.tag }}
{{- end -}}

{{/* A manifest of files/rbac, in the release's namespace. */}}
{{- define "open-local.rbacFile" -}}
{{- $root := index . 0 -}}
{{ $root.Files.Get (printf "files/rbac/%s" (index . 1)) | replace "namespace: kube-system" (printf "namespace: %s" $root.Release.Namespace) }}
{{- end -}}

{{/* Restricted container security context for components that touch no host. */}}
{{- define "open-local.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
