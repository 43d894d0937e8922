# The bpfattestd container image (deploy/kubernetes/daemonset.yaml):
#   docker build -t ghcr.io/bpfattest/bpfattestd:v0.1.0 .
#
# The daemon is built without cgo: in production it talks to the kernel's
# TPM resource manager (/dev/tpmrm0) or a swtpm socket, and the in-process
# TPM simulator (the only cgo code, which needs OpenSSL) is left out, so
# `--tpm sim` answers "not supported" in this image. A static binary needs no
# C library, and the image holds nothing else: no shell, no package manager.
# The verifier CLI (bpfattest) is in the image too, for `bpfattest log` and
# `bpfattest load` from a debug container.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
RUN go build -trimpath -ldflags="-s -w" -o /out/bpfattestd ./cmd/bpfattestd \
 && go build -trimpath -ldflags="-s -w" -o /out/bpfattest ./cmd/bpfattest

FROM scratch
COPY --from=build /out/bpfattestd /out/bpfattest /usr/local/bin/
# Root: bpf(), perf events of BPF program loads, /dev/tpmrm0 and the local
# socket's peer checks need it (deploy/README.md lists the capabilities).
USER 0:0
ENTRYPOINT ["/usr/local/bin/bpfattestd"]
