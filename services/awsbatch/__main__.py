import sys

from batchgate import server

sys.exit(server.main("awsbatch", sys.argv[1:]))
