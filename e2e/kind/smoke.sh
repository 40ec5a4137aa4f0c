#!/usr/bin/env bash
# A PVC of open-local-lvm and a pod that writes to it; succeeds when the pod
# completes.
set -euo pipefail
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: open-local-smoke}
spec:
  storageClassName: open-local-lvm
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: open-local-smoke}
spec:
  restartPolicy: Never
  containers:
    - name: write
      image: busybox:1.36
      command: [sh, -c, "dd if=/dev/zero of=/data/f bs=1M count=64 && sync && ls -l /data/f"]
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: open-local-smoke}
YAML
kubectl wait pod/open-local-smoke --for=jsonpath='{.status.phase}'=Succeeded --timeout=300s
kubectl logs open-local-smoke
kubectl delete pod/open-local-smoke pvc/open-local-smoke
