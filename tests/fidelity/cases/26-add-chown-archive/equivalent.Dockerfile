# Same resulting image as Dockerfile as BuildKit builds it: Buildah 1.28
# ignores --chown for the members of an archive ADD unpacks (and for the
# directory it creates), BuildKit (v0.23.0+, moby/buildkit#5987) applies it
# to every entry. expected.txt is this file's image as built by Buildah.
FROM busybox
RUN mkdir /unpacked
ADD payload.tar.gz /unpacked/chowned/
RUN chown -R -h 33:44 /unpacked/chowned
