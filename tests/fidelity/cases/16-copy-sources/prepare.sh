# Run in the staged build context: symlinks as COPY sources.
set -e
ln -s real dirlink
ln -s real/r.txt filelink
