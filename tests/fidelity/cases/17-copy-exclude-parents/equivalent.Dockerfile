# Same resulting image as Dockerfile, without --exclude and --parents
# (Buildah 1.28 has neither). expected.txt is this file's image as built by
# Buildah.
FROM busybox
COPY src/a/a.txt /excluded/a/
COPY src/a/b/b.txt src/a/b/b2.txt /excluded/a/b/
COPY src/a/b/b.txt src/a/b/b2.txt /parents/src/a/b/
COPY lib/l.txt /parents/lib/
COPY src/a/b/b.txt /pivot/a/b/
