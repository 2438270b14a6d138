# Run in the staged build context: builds the archive ADD unpacks.
set -e
mkdir -p payload/emptydir
chmod 2755 payload/sub
ln -s one.txt payload/link-to-one
ln payload/one.txt payload/hard-one
chown -R 1000:1000 payload/sub
tar --sort=name --mtime=@0 -cf - -C payload . | gzip -c > payload.tar.gz
rm -rf payload
