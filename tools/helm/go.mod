// Module tools/helm pins Helm for the chart checks (helm lint, helm
// template). It is a module of its own so that Helm's dependencies never
// reach Open-Local's. Build with hack/build-helm.sh.
module github.com/open-local/open-local/tools/helm

go 1.26.0

require helm.sh/helm/v4 v4.3.2 // indirect
