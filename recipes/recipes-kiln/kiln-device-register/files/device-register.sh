#!/bin/sh
exec node /usr/lib/kiln/device-register.mjs "$@"
