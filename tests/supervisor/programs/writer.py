"""Write N numbered lines, each in three write(2) calls, then wait to be stopped.

Run under supervisord by test_runtime.py: the partial writes make supervisord read
partial lines, and two of these running at once interleave their chunks.
"""

import os
import sys
import time

name, n = sys.argv[1], int(sys.argv[2])
fd = 1 if name.endswith("o") else 2
for i in range(n):
    os.write(fd, f"{name}-{i:05d} ".encode())
    if i % 50 == 0:
        time.sleep(0.002)
    os.write(fd, b"payload " * 8)
    os.write(fd, b"end\n")
time.sleep(60)
