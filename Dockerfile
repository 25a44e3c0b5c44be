# Multi-stage build: a static dsat binary on a small, supported base that
# still has sh, sed and awk for exec steps (and jq, which the wordcount
# example uses; busybox wget serves the compose healthchecks), running as a
# non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/dsat ./cmd/dsat

FROM alpine:3.22
RUN apk add --no-cache jq && adduser -D -H -u 10001 dsat
COPY --from=build /out/dsat /usr/local/bin/dsat
COPY examples/ /etc/dsat/pipelines/
USER dsat
ENTRYPOINT ["dsat"]
CMD ["help"]
