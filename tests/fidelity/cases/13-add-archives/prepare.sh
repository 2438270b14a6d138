# Run in the staged build context: builds the archives ADD unpacks.
set -e
mkdir -p payload/emptydir payload/private
chmod 0700 payload/private
echo secret > payload/private/key
chmod 0600 payload/private/key
chmod 2755 payload/sub
ln -s one.txt payload/link-to-one
ln payload/one.txt payload/hard-one
chown -R 1000:1000 payload/sub
tar --sort=name --mtime=@0 -cf plain.tar -C payload .
for z in gzip xz bzip2 zstd; do
  case $z in gzip) ext=gz ;; bzip2) ext=bz2 ;; zstd) ext=zst ;; *) ext=$z ;; esac
  tar --sort=name --mtime=@0 -cf - -C payload . | $z -c > payload.tar.$ext
done
rm -rf payload
