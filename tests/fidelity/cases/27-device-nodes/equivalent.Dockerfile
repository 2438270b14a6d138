# Same resulting image as Dockerfile, without mknod in RUN: Buildah 1.28's
# chroot isolation may not make device nodes (EPERM), BuildKit's default
# RUN may (CAP_MKNOD, device cgroup rule "c/b *:* m"). prepare.sh makes the
# nodes in the staged context, as root, with the modes and owner RUN gives
# them (umask 022); expected.txt is this file's image as built by Buildah.
FROM busybox
ADD nodes.tar /
