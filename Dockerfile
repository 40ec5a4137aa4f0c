# The Open-Local image: one static binary plus the host tools it runs (LVM,
# mkfs, mount). Build: docker build -t openlocal/open-local:dev .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/open-local ./cmd/open-local

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends lvm2 e2fsprogs xfsprogs util-linux mount \
 && rm -rf /var/lib/apt/lists/* \
 # Inside a container LVM must not wait for udev, which runs on the host.
 && sed -i 's/^\(\s*\)# udev_sync = 1/\1udev_sync = 0/; s/^\(\s*\)# udev_rules = 1/\1udev_rules = 0/' /etc/lvm/lvm.conf
COPY --from=build /out/open-local /usr/local/bin/open-local
# kubectl plugin name: `kubectl open-local` runs `open-local status`.
RUN ln -s open-local /usr/local/bin/kubectl-open_local
ENTRYPOINT ["/usr/local/bin/open-local"]
