#!/bin/sh
# Stand-in for openvpn in supervisor unit tests. FAKE_OVPN_MODE picks how it
# behaves; the arguments (--config FILE) are ignored.
case "${FAKE_OVPN_MODE:-crash}" in
crash) exit 3 ;;
sleep) exec sleep 30 ;;
ignore-term)
    trap '' TERM
    exec sleep 30
    ;;
esac
