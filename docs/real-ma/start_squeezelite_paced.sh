#!/bin/bash
# Kit's start_squeezelite.sh, but stdout PCM (16-bit, 44.1 kHz) goes to pacer.py which reads it at
# real-time rate: with `> /dev/null` squeezelite plays a 20 s track in ~2 s (seen: elapsed 17 s
# reported 2.0 s after play_media), which makes pause/seek/repeat scenarios untimeable.
cd "${REALMA_DIR:?set REALMA_DIR to the base folder}"
nsenter -t "$(cat netns.pid)" -n squeezelite -s 127.0.0.1 -n insight-test-player -m 00:11:22:33:44:55 -a 16 -o - -d all=info \
  2> ${REALMA_DIR}/squeezelite.log > >(python3 ${REALMA_DIR}/pacer.py) &
echo $! > squeezelite.pid
echo "squeezelite pid $(cat squeezelite.pid)"
