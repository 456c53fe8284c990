#!/usr/bin/env bash
# Pin the Lambda base image of both Dockerfiles to the current digest of its tag (a multi-arch
# index, so arm64 and x86_64 builds both resolve it). Needs Docker with buildx and internet access.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-public.ecr.aws/lambda/python:3.12}
digest=$(docker buildx imagetools inspect "$IMAGE" --format '{{json .Manifest}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
case "$digest" in sha256:*) ;; *) echo "no digest for $IMAGE" >&2; exit 1 ;; esac
for file in lambdas/worker/Dockerfile lambdas/raster_api/Dockerfile; do
  sed -i -E "s#^FROM ${IMAGE}(@sha256:[0-9a-f]{64})?\$#FROM ${IMAGE}@${digest}#" "$file"
  grep -q "^FROM ${IMAGE}@${digest}\$" "$file"
done
echo "pinned $IMAGE@$digest"
