#!/usr/bin/env bash
# The deployment's static checks, as CI runs them: ansible-lint (Debian 12's,
# offline, production profile; ansible/.ansible-lint) and
# ansible-playbook --syntax-check of site.yml against the example inventory.
# Ansible's own files go to a temp dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../ansible"
ANSIBLE_HOME=$(mktemp -d "${TMPDIR:-/tmp}/ansible-lint.XXXXXX")
trap 'rm -rf "$ANSIBLE_HOME"' EXIT
export ANSIBLE_HOME ANSIBLE_LOCAL_TEMP="$ANSIBLE_HOME/tmp" ANSIBLE_NOCOLOR=1
ansible-playbook --syntax-check -i inventory.example.ini site.yml
ansible-lint --nocolor -p
echo "ansible lint: site.yml and its roles pass"
