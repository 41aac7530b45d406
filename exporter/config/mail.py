"""The mailbox sections: ``roundtrip`` (SMTP submission and IMAP)."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from exporter.config.fields import (
    Duration,
    Folder,
    MailAddress,
    MailHost,
    Model,
    SecretRef,
    Security,
    check_name,
)


class SmtpConfig(SecretRef):
    host: MailHost
    port: int = Field(default=587, gt=0, lt=65536)
    security: Security = "starttls"
    username: str | None = None
    ca_file: str | None = None
    helo: str | None = None
    """EHLO name; default the machine's host name when it is a FQDN, else the sender's domain."""

    @model_validator(mode="after")
    def _password_with_username(self) -> SmtpConfig:
        if self.username and not self.has_secret:
            raise ValueError("username needs password_env or password_file")
        return self


class ImapConfig(SecretRef):
    host: MailHost
    port: int = Field(default=993, gt=0, lt=65536)
    security: Security = "tls"
    username: str
    mailbox: Folder = "INBOX"
    spam_folder: Folder | None = None
    ca_file: str | None = None
    poll_interval: Duration = 5.0
    """How often to search when the server lacks IDLE (with IDLE new mail is pushed)."""

    @model_validator(mode="after")
    def _needs_password(self) -> ImapConfig:
        if not self.has_secret:
            raise ValueError("give password_env or password_file")
        return self


class RoundtripConfig(Model):
    name: str
    from_: MailAddress = Field(alias="from")
    to: MailAddress
    smtp: SmtpConfig
    imap: ImapConfig
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The name goes into the probe's mail header and its IMAP searches.
        return check_name(value)
