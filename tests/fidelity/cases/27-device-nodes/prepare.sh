# Run in the staged build context: the nodes equivalent.Dockerfile ADDs.
set -e
mkdir -p nodes/devs
mknod -m 0644 nodes/dev-char c 1 3
mknod -m 0644 nodes/dev-block b 7 0
mknod -m 0600 nodes/devs/private-char c 10 200
mkfifo -m 0644 nodes/devs/fifo
tar --sort=name --numeric-owner --owner=0 --group=0 -cf nodes.tar -C nodes .
rm -rf nodes
