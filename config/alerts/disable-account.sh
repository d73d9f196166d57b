#!/bin/sh
# saslguard alert command: lock an account whose password was guessed.
#
# [alerts]
# command = ["/usr/share/doc/saslguard/alerts/disable-account.sh"]
#
# On login_after_failures and login_after_prefix_failures it adds the account to a
# deny list that Dovecot checks before its real passdb, so the password stops working
# for IMAP, POP3 and (through Dovecot SASL) SMTP AUTH, and ends the account's open
# sessions. Dovecot 2.3 (conf.d/10-auth.conf), before the real passdb:
#
#   passdb {
#     driver = passwd-file
#     args = /etc/dovecot/deny-users
#     deny = yes
#   }
#
# Dovecot 2.4:
#
#   passdb deny-users {
#     driver = passwd-file
#     passwd_file_path = /etc/dovecot/deny-users
#     deny = yes
#   }
#
# The user sets a new password with the admin, who then removes the line. Every
# action is logged with logger(1). The user name comes from the mail log: it is
# checked to be a plain account name before it is written anywhere.
set -eu
log() { logger -t saslguard-alert "$1" 2>/dev/null || printf 'saslguard-alert: %s\n' "$1" >&2; }
DENY=${SASLGUARD_DENY_FILE:-/etc/dovecot/deny-users}
case "${SASLGUARD_ALERT_KIND:-}" in
  login_after_failures|login_after_prefix_failures) ;;
  *) exit 0 ;;
esac
user=${SASLGUARD_ALERT_USER:-}
# Only names made of the characters mail accounts use: nothing that could add a
# second line, a field separator or an option to the file and the commands below.
case "$user" in
  ''|-*|*[!A-Za-z0-9._+@-]*)
    log "not disabling account: unusable name from the log"
    exit 0 ;;
esac
if [ "${#user}" -gt 128 ]; then
  log "not disabling account: name too long"
  exit 0
fi
if ! grep -qxF "$user:" "$DENY" 2>/dev/null; then
  printf '%s:\n' "$user" >> "$DENY"
fi
doveadm kick -- "$user" >/dev/null 2>&1 || true
log "account $user disabled after ${SASLGUARD_ALERT_KIND} from ${SASLGUARD_ALERT_ADDRESS:-?}; remove it from $DENY after a password change"
