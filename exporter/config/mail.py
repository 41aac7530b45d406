"""The mailbox sections: ``roundtrip`` (SMTP submission and IMAP) and ``reports`` (a mailbox
of DMARC aggregate and TLS-RPT reports)."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from exporter.config.fields import (
    DomainName,
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


class ReportsImapConfig(SecretRef):
    """The mailbox DMARC aggregate and TLS-RPT reports are sent to (the ``rua=`` addresses of
    the domains' DMARC and TLS-RPT records)."""

    host: MailHost
    port: int = Field(default=993, gt=0, lt=65536)
    security: Security = "tls"
    username: str
    folder: Folder = "INBOX"
    """Where new reports arrive."""
    processed_folder: Folder = "Processed"
    """Where every message read is moved (created when missing)."""
    invalid_folder: Folder = "Invalid"
    """Where messages holding no parseable report are moved (created when missing)."""
    ca_file: str | None = None

    @model_validator(mode="after")
    def _checks(self) -> ReportsImapConfig:
        if not self.has_secret:
            raise ValueError("give password_env or password_file")
        folders = [self.folder, self.processed_folder, self.invalid_folder]
        if len(set(folders)) != 3:
            raise ValueError("folder, processed_folder and invalid_folder must be three folders")
        return self


class ReportsConfig(Model):
    """One ``reports`` entry: a mailbox of DMARC aggregate and TLS-RPT reports."""

    name: str
    imap: ReportsImapConfig
    domains: list[DomainName] = Field(default_factory=list)
    """Count only reports about these domains (and their subdomains). Empty: the top-level
    ``domains``, or every domain when that is empty too."""
    max_messages: int = Field(default=200, ge=1, le=10_000)
    """Messages read in one run (the rest wait for the next run)."""
    max_message_bytes: int = Field(default=25 << 20, ge=1 << 10, le=256 << 20)
    """A larger message is moved to the invalid folder without being read."""
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)
