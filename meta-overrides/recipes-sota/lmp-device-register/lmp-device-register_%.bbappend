# Devices register as production devices by default, against the factory's Kiln server.
PACKAGECONFIG += "production"

KILN_DEVICE_API ??= "http://kiln.factory.lan:8000/sign"
# a later -D wins over the recipe's -DDEVICE_API=https://api.foundries.io/ota/devices/
EXTRA_OECMAKE:append = " -DDEVICE_API=${KILN_DEVICE_API}"
