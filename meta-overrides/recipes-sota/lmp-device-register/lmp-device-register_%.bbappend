# Devices register as production devices by default, against the factory's Kiln server.
PACKAGECONFIG += "production"

KILN_DEVICE_API ??= "http://kiln.factory.lan:8000/sign"
# the recipe's own variable, which it passes as -DDEVICE_API
LMP_DEVICE_API = "${KILN_DEVICE_API}"
