# Run in the staged build context: a symlink and an empty directory in the tree.
set -e
ln -s top.txt tree/top-link
mkdir tree/empty
