"""The findings of the services mail depends on: ``ses`` (with its events) and ``queue``."""

from __future__ import annotations

from exporter.findings.spec import CRITICAL, INFO, WARNING, FindingSpec

F = FindingSpec

SPECS: tuple[FindingSpec, ...] = (
    # --- ses (exporter/probes/ses.py) ---------------------------------------------------------
    F("ses_quota_high", "ses", WARNING,
      "Messages sent in the last 24 hours are above 80% of the SES 24-hour quota (critical from"
      " 95%); at 100% SES rejects every send with 'Daily message quota exceeded'.",
      "Request a higher sending quota (Service Quotas console: Amazon SES 'Sending quota', or the"
      " SES console's 'Request an increase'), and hold back bulk or non-urgent mail meanwhile."),
    F("ses_sandbox", "ses", WARNING,
      "The SES account is in the sandbox in this region: it can send only to verified addresses,"
      " at most 200 messages a day, so mail to customers is refused.",
      "Request production access (SES console: Account dashboard > Request production access, or"
      " 'aws sesv2 put-account-details --production-access-enabled ...'); if this region is not"
      " meant to send, remove it from the config."),
    F("ses_sending_paused", "ses", CRITICAL,
      "Sending is disabled for the account in this region: every send is refused.",
      "If AWS paused it, read the notice in the SES console's Reputation metrics page and your"
      " e-mail, fix the cause and reply to the case; if it was paused on purpose, resume with"
      " 'aws sesv2 put-account-sending-attributes --sending-enabled'."),
    F("ses_probation", "ses", WARNING,
      "AWS has put the SES account under review (enforcement status PROBATION): mail still"
      " flows, but sending is paused if the bounce or complaint problem is not fixed in time.",
      "Open the SES Reputation metrics page for the cause, clean the recipient list (stop sending"
      " to addresses that bounced or complained, use the suppression list), then reply to the"
      " review notice describing the fix."),
    F("ses_shutdown", "ses", CRITICAL,
      "AWS has shut down sending for the SES account (enforcement status SHUTDOWN).",
      "Follow the instructions in the shutdown notice (SES console, AWS Health, account e-mail):"
      " fix the cause and open a case asking AWS to review and restore sending."),
    F("ses_bounce_rate_high", "ses", CRITICAL,
      "The SES reputation bounce rate is above 5% (warning from 2%); AWS reviews accounts above"
      " 5% and may pause sending above 10%.",
      "Stop sending to addresses that hard-bounced (enable the account-level suppression list),"
      " validate addresses at sign-up with double opt-in, and remove stale lists."),
    F("ses_complaint_rate_high", "ses", CRITICAL,
      "The SES reputation complaint rate is above 0.1% (warning from 0.05%); AWS reviews"
      " accounts above 0.1% and may pause sending above 0.5%.",
      "Send only mail recipients asked for, add a List-Unsubscribe header and honour it, process"
      " complaint notifications (SNS) by suppressing the address, and check which messages draw"
      " complaints."),
    F("ses_identity_not_verified", "ses", CRITICAL,
      "A configured SES identity (domain or address) is not verified, or does not exist in the"
      " region (warning while verification is pending or could not be checked): SES refuses to"
      " send from it.",
      "Create the identity in this region if missing, then publish the verification DNS records"
      " (DKIM CNAMEs) or click the link sent to the address; 'aws sesv2 get-email-identity"
      " --email-identity <name>' shows the status."),
    F("ses_identity_dkim_not_verified", "ses", WARNING,
      "DKIM is not verified for a configured SES identity (critical when verification failed):"
      " mail is not DKIM-signed with the domain, so DMARC alignment may fail.",
      "Publish the three DKIM CNAME records shown for the identity in the SES console (Easy"
      " DKIM), or the TXT record of your own key (BYODKIM), and keep them published."),
    F("ses_events_no_dead_letter_queue", "ses", WARNING,
      "The SES events queue has no redrive policy: a message that is not an SES event is never"
      " deleted by the exporter and comes back after every visibility timeout until the queue's"
      " retention period ends.",
      "Create a dead-letter queue and set the events queue's RedrivePolicy to it with a"
      " maxReceiveCount of 3 to 5 ('aws sqs set-queue-attributes ... RedrivePolicy=...')."),
    # --- queue (exporter/probes/queue.py) -------------------------------------------------------
    F("queue_oldest_too_old", "queue", WARNING,
      "An item has waited in the queue longer than the entry's oldest_age (critical from"
      " oldest_age_critical): an RQ job not picked up, or a Postfix message not even handed to"
      " the queue manager (incoming, maildrop); mail is not leaving.",
      "RQ: check that workers run and keep up ('rq info'), and what the oldest job waits for;"
      " Postfix: 'postfix status', the mail log for qmgr/pickup errors, 'postfix check'."),
    F("postfix_deferred_high", "queue", WARNING,
      "The Postfix deferred queue holds at least the entry's 'deferred' threshold of messages"
      " (critical from deferred_critical): receivers are refusing or unreachable; the"
      " evidence and the status page name the most frequent reasons.",
      "Read the top deferral reasons: a 4xx from one provider (rate limits, greylisting,"
      " reputation: see the blacklist and DNS probes), connection timeouts (outbound port 25"
      " blocked), DNS failures; 'qshape deferred' shows the destinations, 'postqueue -f'"
      " retries once fixed."),
    F("postfix_hold", "queue", INFO,
      "Messages are on hold in Postfix: they are never delivered until released.",
      "'postqueue -j' lists them (queue_name hold); release with 'postsuper -H ID' or delete"
      " with 'postsuper -d ID'; check header/body checks with a HOLD action."),
    F("queue_no_workers", "queue", WARNING,
      "An RQ queue has jobs waiting and no live RQ worker listens on it (critical once it has"
      " grown meanwhile): nothing sends that mail.",
      "Start or restart the workers for this queue ('rq worker QUEUE', your process manager or"
      " deployment); 'rq info' shows the workers Redis knows."),
    F("queue_failed_growing", "queue", WARNING,
      "The RQ failed-job registry of a queue grew since the previous run: mail jobs are"
      " failing.",
      "Look at the failures ('rq info', or FailedJobRegistry(queue=...).get_job_ids() and each"
      " job's exc_info): SMTP or API credentials, a provider refusing, a bug; requeue them once"
      " fixed ('rq requeue --all --queue QUEUE')."),
    F("queue_growing", "queue", WARNING,
      "A Redis queue grew at each of the last growing_runs runs: jobs arrive faster than the"
      " workers take them, or the workers are stuck.",
      "Check the workers (running, not stuck on one slow job, enough of them for the load) and"
      " what is flooding the queue."),
    F("queue_unknown", "queue", INFO,
      "A configured queue is empty and unknown to RQ (not in rq:queues) or kombu (no"
      " _kombu.binding set): possibly a misspelt name, so nothing is watched.",
      "Compare the name with the application's queue names ('rq info', Celery's task_queues);"
      " RQ and Celery create a queue only when the first job is sent to it."),
)  # fmt: skip
