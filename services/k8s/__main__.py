import sys

from batchgate import server

sys.exit(server.main("k8s", sys.argv[1:]))
