-- RDP one-time tickets are kept readable for their short life, sealed with
-- the secret-store master key (XChaCha20-Poly1305, the ticket's hash bound
-- as associated data), because NLA (CredSSP/NTLM) makes the bastion prove
-- knowledge of the secret. The sealed value is removed when the ticket is
-- used and the row when it expires; SSH tickets are never sealed.
ALTER TABLE tickets ADD COLUMN sealed_nonce BLOB;
ALTER TABLE tickets ADD COLUMN sealed_text BLOB;
CREATE INDEX tickets_live ON tickets (user_name, target, protocol, issued_at);
