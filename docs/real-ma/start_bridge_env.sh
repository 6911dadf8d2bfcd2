#!/bin/bash
# Kit's start_bridge.sh with the token from a file via the environment (MA_TOKEN_FILE), not argv;
# INSIGHT_STORAGE__DATA_DIR lets the bridge read the embedded NATS credentials (idata/nats/auth.env).
cd "${REALMA_DIR:?set REALMA_DIR to the base folder}"
MA_URL=http://127.0.0.1:8095 MA_TOKEN_FILE=${REALMA_DIR}/ma_token_long INSIGHT_STORAGE__DATA_DIR=${REALMA_DIR}/idata \
  nsenter -t "$(cat netns.pid)" -n ${REALMA_DIR}/insight/.venv/bin/insight ma-bridge \
  --nats-url nats://127.0.0.1:4333 "$@" > ${REALMA_DIR}/bridge.log 2>&1 &
echo $! > bridge.pid
echo "bridge pid $(cat bridge.pid)"
