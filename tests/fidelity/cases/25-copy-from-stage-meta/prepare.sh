# Run in the staged build context: a context file owned by someone else.
chown 1234:1234 owned.txt
