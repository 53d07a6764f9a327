"""From notifications to outbox messages: routes, channel filters, quiet hours, one message per account and
channel per evaluation (no storms)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from monitor.alerts.messages import Messages, messages_for
from monitor.alerts.model import HeldItem, Item, Outgoing, Reason, State
from monitor.config.model import ChannelConfig, Config
from monitor.rules.model import Rule, Severity


def quiet_until(channel: ChannelConfig, now: datetime) -> datetime | None:
    """The end of the channel's quiet window if `now` is inside it, as UTC; correct across DST changes because
    the end is computed as a local wall-clock time on the right local date, then converted."""
    if channel.quiet_hours is None:
        return None
    start, end = channel.quiet_hours
    local = now.astimezone(channel.timezone)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside, end_date = start <= clock < end, local.date()
    else:  # wraps past midnight
        inside = clock >= start or clock < end
        end_date = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_date, end, tzinfo=channel.timezone).astimezone(UTC)


def accepts(channel: ChannelConfig, item: Item) -> bool:
    """Whether a channel takes an item. Easing and resolving go where the episode's worst severity went, so a
    critical-only channel hears that its alert is over."""
    a = item.alert
    announced = a.worst_severity if item.reason in (Reason.RESOLVED, Reason.EASED) else a.severity
    severity = Severity(announced) if announced else Severity.WARNING
    if severity.rank < Severity(channel.min_severity).rank:
        return False
    return item.reason is not Reason.RESOLVED or channel.send_resolved


def compose(
    items: Iterable[Item],
    rules: Mapping[str, Rule],
    account_channels: Mapping[str, tuple[str, ...]],
    account_tags: Mapping[str, tuple[str, ...]],
    channels: Mapping[str, ChannelConfig],
    messages: Messages,
    now: datetime,
) -> list[Outgoing]:
    """Group one evaluation's items by account and channel into messages. A routed item goes to the rule's
    channels (every channel when the rule names none) and the account's, if the channel accepts it. During a
    channel's quiet hours only critical items go out; the rest are held."""
    grouped: dict[tuple[str | None, str], list[Item]] = defaultdict(list)
    for item in items:
        rule = rules.get(item.alert.rule)
        if rule is None:  # the rule was removed by a reload
            continue
        routes = list(rule.channels or channels) + list(account_channels.get(item.alert.account or "", ()))
        for name in dict.fromkeys(routes):
            channel = channels.get(name)
            if channel is not None and accepts(channel, item):
                grouped[(item.alert.account, name)].append(item)
    out: list[Outgoing] = []
    for (account, name), group in grouped.items():
        held_until = quiet_until(channels[name], now)
        urgent = group if held_until is None else [i for i in group if _urgent(i)]
        held = [] if held_until is None else [i for i in group if not _urgent(i)]
        tags = account_tags.get(account or "", ())
        for part, until in ((urgent, None), (held, held_until)):
            if part:
                out.append(
                    Outgoing(
                        name,
                        account,
                        message_severity(part),
                        messages.render(account, tags, part, channels[name].timezone),
                        tuple(part),
                        until,
                    )
                )
    return out


def message_severity(items: list[Item]) -> str | None:
    """What a message is, for apprise's notification type: "resolved" when it only resolves, else the worst
    severity in it (a liquidation is critical: never a green message about a lost position)."""
    if all(i.reason is Reason.RESOLVED for i in items):
        return "resolved"
    return min(items, key=lambda i: i.rank).alert.severity


def _urgent(item: Item) -> bool:
    return item.reason is not Reason.RESOLVED and item.alert.severity == Severity.CRITICAL


def window_text(channel: ChannelConfig) -> str:
    if channel.quiet_hours is None:
        return ""
    start, end = channel.quiet_hours
    return f"{start:%H:%M}-{end:%H:%M} {channel.timezone.key}"


def held_summary(config: Config, name: str, items: list[HeldItem]) -> Outgoing | None:
    """The one message that replaces channel `name`'s messages held over its quiet hours: the alerts still in
    the state they were announced in, in the channel's time zone. None when none of them is still true."""
    relevant = {i.alert.key: i.alert for i in items if i.alert.state is i.announced}
    if not relevant:
        return None
    rules = {r.name: r for r in config.rules}
    summary_items = [
        Item(a, Reason.RESOLVED if a.state is State.RESOLVED else Reason.FIRING,
             str(rules[a.rule].type) if a.rule in rules else a.rule)
        for a in relevant.values()
    ]  # fmt: skip
    channel = config.channels.get(name)
    window = window_text(channel) if channel else "quiet hours"
    rendered = messages_for(config).summary(window, summary_items, channel.timezone if channel else UTC)
    return Outgoing(name, None, message_severity(summary_items), rendered, tuple(summary_items))
