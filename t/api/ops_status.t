# The status page (SetHandler eventtrigger-status) in its three formats,
# HTML, ?json and ?prometheus, and in mod_status's page (HTML section and
# ?auto), with figures that match what this test did on a site of its own,
# ops-counts (t/conf/operations.conf.in):
#   8 answers that cannot become events (failed), 3 events refused with
#   400 (dead at once), 3 calls held 3 s by a slow receiver (in flight),
#   then delivered, 1 dead letter replayed by a POST to the page (arrives
#   with its txn: 4 delivered, 2 dead), 2 events whose endpoint is down
#   (first attempt failed, retry in 10 minutes: pending and retrying), which
#   also pauses the endpoint (EventTriggerCircuitBreaker 2: circuit open).
# Then 1000 deliveries of a site no longer configured, written into the
# outbox directly: its row, and the percentiles of this site.
# Also the site ops-esc, whose name needs escaping in HTML and Prometheus.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use Time::HiRes ();

plan tests => 68;

my $SITE = 'ops-counts';
my $ESC = 'ops-esc<"\\&>';
my $VH = 'ops_counts';
my $port = ops_define('ET_OPS_RECEIVER_PORT');
my $closed = ETTest::define('ET_CLOSED_PORT');
my $rlog = receiver_log();
my $u = uniq('ops');
my @STATES = qw(pending in_flight retrying delivered dead failed);

sub rows_of {
    my @ids = @_;
    my $in = join ',', map { sql_quote($_) } @ids;
    my $rows = outbox("SELECT id, txn, oid, state, attempts, last_status, "
                      . "lease_until FROM et_event WHERE site = '$SITE' "
                      . "AND oid IN ($in) ORDER BY id");
    return { map { $_->{oid} => $_ } @$rows };
}

sub all_rows {
    my($ids, $cond) = @_;
    my $r;
    my $ok = wait_for(sub {
        $r = rows_of(@$ids);
        return @$ids == grep { $r->{$_} && $cond->($r->{$_}) } @$ids;
    }, 30);
    return ($ok, $r);
}

sub make_event {
    my $id = shift;
    my $res = request($VH, POST => '/inproc/member',
                      json => { id => $id, username => "user-$id" });
    return $res->code == 201;
}

sub delta {
    my($now, $base) = @_;
    return { map { $_ => ($now->{$_} // 0) - ($base->{$_} // 0) } @STATES };
}

sub prom_get {
    my $res = request($VH, GET => '/et-status?prometheus');
    return ($res, prom_parse($res->content));
}

sub html_site_row {
    my($tables, $name) = @_;
    for my $t (@$tables) {
        next unless @{ $t->{head} } && $t->{head}[0] eq 'site';
        for my $row (@{ $t->{rows} }) {
            return $row if $row->[0] eq $name;
        }
    }
    return undef;
}

# -- before ---------------------------------------------------------------

my($all0, $base) = site_status($SITE, $VH);
ok($base, "the site $SITE is listed before it has events (configured)")
    or diag(explain $all0);
$base ||= {};
is($base->{circuit}{state} // '', 'closed', 'its endpoint starts healthy')
    or BAIL_OUT('the circuit of ops-counts is not closed: run the suite on a '
                . 'fresh server (./TEST starts one with an empty outbox)');

# -- 8 failed: answers that cannot become events ------------------------------
# (first, so that the later failures are the 10 most recent ones)

my $last = outbox("SELECT COALESCE(max(id), 0) AS m FROM et_event")->[0]{m};
for my $raw (qq({"id": "bad-$u", ), qq({"name": "noid-$u"}), qq([{"id": "arr-$u"}]),
             qq("str-$u"), '42', '{"id": null}', '{"id": ""}', '{"id": true}') {
    request($VH, POST => '/inproc/member', content => $raw,
            headers => { 'X-Console-Raw' => 1 });
}
my $failed = outbox("SELECT id, txn, state FROM et_event WHERE site = '$SITE' "
                    . "AND id > $last ORDER BY id");
is_deeply([map { $_->{state} } @$failed], [(3) x 8],
          'eight unusable answers: eight failed events') or diag(explain $failed);

# -- 3 dead letters: the receiver answers 400 -----------------------------

my $rpid = start_receiver(port => $port, status => 400, log => $rlog,
                          truncate => 1);
my @dead = map { "dead-$u-$_" } 1 .. 3;
is(scalar(grep { make_event($_) } @dead), 3, 'three creates answered 201');
my($ok, $rows) = all_rows(\@dead, sub { $_[0]{state} == 2 });
ok($ok && !grep({ $rows->{$_}{attempts} != 1 || $rows->{$_}{last_status} != 400 } @dead),
   'refused with 400: dead at once, after one attempt')
    or diag(explain $rows);
my %txn = map { $_ => $rows->{$_}{txn} } @dead;
stop_proc($rpid);

# -- 3 calls in flight, then delivered ------------------------------------

$rpid = start_receiver(port => $port, status => 200, delay => 3, log => $rlog);
my @good = map { "ok-$u-$_" } 1 .. 3;
is(scalar(grep { make_event($_) } @good), 3, 'three more creates answered 201');
my $arrived = wait_for(sub { 3 == grep { calls_for_id($_, $rlog) } @good }, 20);
ok($arrived, 'the three calls reached the slow receiver');
{
    # the receiver holds each call 3 s: they are in flight now. "retrying"
    # counts the events waiting for a retry (attempted, not leased: see
    # ST_SITE_COUNTS), so a first attempt in flight is not one.
    my($all, $s) = site_status($SITE, $VH);
    my($pres, $prom) = prom_get();
    my $hres = request($VH, GET => '/et-status');
    my $row = html_site_row(html_tables($hres->content), $SITE);
    my $d = delta($s, $base);
    is_deeply({ map { $_ => $d->{$_} } qw(pending in_flight retrying) },
              { pending => 3, in_flight => 3, retrying => 0 },
              '?json: 3 pending, all 3 in flight, none waiting for a retry')
        or diag(explain $s);
    is(prom_value($prom, 'eventtrigger_events', site => $SITE, state => 'in_flight'),
       $s->{in_flight}, '?prometheus: the same in_flight');
    is($row ? $row->[3] : undef, $s->{in_flight}, 'HTML: the same "in flight"');
}
($ok, $rows) = all_rows(\@good, sub { $_[0]{state} == 1 });
ok($ok, 'the three calls were delivered') or diag(explain $rows);

# -- replay one dead letter -------------------------------------------------

{
    my $t = $txn{$dead[0]};
    my $res = request($VH, POST => '/et-status', content => "replay=$t",
                      headers => { 'Content-Type' => 'application/x-www-form-urlencoded',
                                   'Origin' => 'http://evil.example' });
    is($res->code, 403, 'replay with an Origin of another site: 403');
    $res = request($VH, POST => '/et-status', content => "replay=$t",
                   headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
    is_deeply(response_json($res), { replayed => 1 },
              'POST replay=TXN of a dead letter: {"replayed":1}')
        or diag($res->as_string);
    my $calls = wait_calls($dead[0], log => $rlog, n => 2, timeout => 20);
    my %q = parse_query($calls->[-1] ? $calls->[-1]{query} : '');
    is_deeply([scalar @$calls, $q{txn}, $q{event}, $calls->[-1] ? $calls->[-1]{method} : undef],
              [2, $t, 'post-create', 'PUT'],
              'the replayed event arrived again, with the same txn')
        or diag(explain $calls);
    is($calls->[-1] ? $calls->[-1]{path} : '', "/hooks/ops/v1/member/$dead[0]",
       'to the same URL');
    ($ok, $rows) = all_rows([$dead[0]], sub { $_[0]{state} == 1 });
    ok($ok, 'and it is delivered now') or diag(explain $rows);
    $res = request($VH, POST => '/et-status', content => "replay=$t",
                   headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
    is_deeply(response_json($res), { replayed => 0 },
              'replaying it again replays nothing (no longer dead)');
}
stop_proc($rpid);

# -- 2 pending: the endpoint is down ------------------------------------------

my @pend = map { "pend-$u-$_" } 1 .. 2;
my $t_pend = time;
is(scalar(grep { make_event($_) } @pend), 2, 'two creates while nothing listens');
($ok, $rows) = all_rows(\@pend, sub {
    $_[0]{state} == 0 && $_[0]{attempts} == 1 && $_[0]{lease_until} == 0 });
ok($ok, 'each had its first attempt, failed, and waits for its retry')
    or diag(explain $rows);
my($all, $s);
ok(wait_for(sub { ($all, $s) = site_status($SITE, $VH);
                  $s && $s->{circuit}{state} eq 'open' }, 10),
   'two failures in a row pause the endpoint');
Time::HiRes::sleep(1.1);          # the oldest pending event is >= 1 s old

# -- the figures, format by format -----------------------------------------

($all, $s) = site_status($SITE, $VH);
my $res_json = request($VH, GET => '/et-status?json');
my($res_prom, $prom) = prom_get();
my $res_html = request($VH, GET => '/et-status');

# ?json
like($res_json->header('Content-Type') // '', qr{^application/json}, '?json: application/json');
is($res_json->header('Cache-Control') // '', 'no-store', '?json: Cache-Control: no-store');
is_deeply(delta($s, $base),
          { pending => 2, in_flight => 0, retrying => 2, delivered => 4,
            dead => 2, failed => 8 },
          '?json: the site counts what the test did') or diag(explain $s);
is($s->{endpoint}, "http://127.0.0.1:$port/hooks/ops", '?json: the endpoint');
my $lat = $s->{latency_ms} || {};
ok(($lat->{p50} // 0) > 0 && ($lat->{p99} // 0) >= $lat->{p50},
   '?json: latency p50 > 0, p99 >= p50') or diag(explain $lat);
is($lat->{samples}, $s->{delivered}, '?json: one latency sample per delivery');
cmp_ok($lat->{p99}, '<', 60_000, '?json: latencies in ms (under a minute)');
my $age_max = time - $t_pend + 1;
ok(defined $s->{oldest_pending_age_s} && $s->{oldest_pending_age_s} >= 1
   && $s->{oldest_pending_age_s} <= $age_max,
   "?json: oldest_pending_age_s between 1 and $age_max")
    or diag(explain $s);
my $c = $s->{circuit} || {};
ok($c->{state} eq 'open' && $c->{failures} >= 2
   && ($c->{last_error} // '') =~ /\S/,
   '?json: circuit open after 2 failures, with the last error')
    or diag(explain $c);
is_deeply({ map { my $k = $_; $k => $all->{$k} } @STATES },
          { map { my $k = $_; my $n = 0; $n += $_->{$k} for @{ $all->{sites} };
                  $k => $n } @STATES },
          '?json: the top-level counts are the sums over the sites');
my($rf) = grep { $_->{txn} eq $txn{$dead[1]} } @{ $all->{recent_failures} || [] };
ok($rf, '?json: recent_failures has the txn of a dead letter')
    or diag(explain $all->{recent_failures});
is_deeply($rf && { map { $_ => $rf->{$_} } qw(site object event id attempts status) },
          { site => $SITE, object => 'member', event => 'post-create',
            id => $dead[1], attempts => 1, status => 400 },
          '?json: with its site, object, event, id, attempts and status');
like($rf ? $rf->{error} // '' : '', qr/400/, '?json: and an error that says 400');
ok(!grep({ $_->{txn} eq $txn{$dead[0]} } @{ $all->{recent_failures} || [] }),
   '?json: the replayed (now delivered) one is not a failure any more');
ok(2 == grep({ my $f = $_; grep { $f->{id} eq $_ } @pend }
             @{ $all->{recent_failures} || [] }),
   '?json: the two retrying events (the latest failures) are among the 10 '
   . 'recent failures') or diag(explain $all->{recent_failures});
my($esc) = grep { $_->{site} eq $ESC } @{ $all->{sites} || [] };
ok($esc && $esc->{endpoint} eq "http://127.0.0.1:$closed/hooks/esc"
   && !grep({ $esc->{$_} } @STATES) && $esc->{circuit}{state} eq 'closed',
   "?json: the site '$ESC', configured but without events, with zeros")
    or diag(explain $esc);

# ?prometheus
is($res_prom->header('Content-Type') // '', 'text/plain; version=0.0.4',
   '?prometheus: Content-Type text/plain; version=0.0.4');
is_deeply($prom->{errors}, [], '?prometheus: the text format parses strictly')
    or diag($res_prom->content);
my %types = map { $_ => $prom->{families}{$_}{type} } keys %{ $prom->{families} };
is_deeply(\%types,
          { eventtrigger_events => 'gauge',
            eventtrigger_oldest_pending_seconds => 'gauge',
            eventtrigger_delivery_seconds => 'summary',
            eventtrigger_endpoint_paused => 'gauge',
            eventtrigger_outbox_writable => 'gauge',
            eventtrigger_outbox_free_bytes => 'gauge',
            eventtrigger_deliveries_held_back => 'gauge',
            eventtrigger_outbox_refusing_since_seconds => 'gauge',
            eventtrigger_refused_total => 'counter',
            eventtrigger_lost_total => 'counter',
            eventtrigger_before_total => 'counter',
            eventtrigger_before_latency_ms => 'gauge' },
          '?prometheus: the twelve families with their TYPE');
ok(!grep({ !length($prom->{families}{$_}{help} // '') } keys %{ $prom->{families} }),
   '?prometheus: each with a HELP text');
is_deeply({ map { $_ => prom_value($prom, 'eventtrigger_events', site => $SITE,
                                   state => $_) } @STATES },
          { map { $_ => $s->{$_} } @STATES },
          '?prometheus: eventtrigger_events of the site = ?json');
is_deeply([sort map { $_->{labels}{site} } grep { $_->{labels}{state} eq 'dead' }
           @{ $prom->{families}{eventtrigger_events}{samples} || [] }],
          [sort map { $_->{site} } @{ $all->{sites} }],
          '?prometheus: every site of ?json, once per state');
ok(6 == grep({ $_->{labels}{site} eq $SITE }
             @{ $prom->{families}{eventtrigger_events}{samples} || [] }),
   '?prometheus: six states per site');
is(prom_value($prom, 'eventtrigger_endpoint_paused', site => $SITE), 1,
   '?prometheus: eventtrigger_endpoint_paused 1 (circuit open)');
my $p50 = prom_value($prom, 'eventtrigger_delivery_seconds', site => $SITE, quantile => '0.5');
my $p99 = prom_value($prom, 'eventtrigger_delivery_seconds', site => $SITE, quantile => '0.99');
ok(defined $p50 && defined $p99 && abs($p50 - $lat->{p50} / 1000) < 1e-6
   && abs($p99 - $lat->{p99} / 1000) < 1e-6,
   '?prometheus: quantiles 0.5 and 0.99 in seconds = ?json p50, p99')
    or diag(explain [$p50, $p99, $lat]);
my $old = prom_value($prom, 'eventtrigger_oldest_pending_seconds', site => $SITE);
ok(defined $old && abs($old - $s->{oldest_pending_age_s}) <= 1,
   '?prometheus: eventtrigger_oldest_pending_seconds = ?json (+-1 s)');
like($res_prom->content,
     qr/^eventtrigger_events\{site="ops-esc<\\"\\\\&>",state="pending"\} 0$/m,
     '?prometheus: " and \\ escaped in the label value');
is(prom_value($prom, 'eventtrigger_events', site => $ESC, state => 'failed'), 0,
   '?prometheus: and the value unescapes to the site name');

# HTML
like($res_html->header('Content-Type') // '', qr{^text/html; charset=utf-8}i,
     'HTML: text/html; charset=utf-8');
my $tables = html_tables($res_html->content);
is_deeply($tables->[0] ? $tables->[0]{head} : [],
          ['site', 'endpoint', 'pending', 'in flight', 'retrying', 'delivered',
           'dead', 'failed', 'oldest pending', 'p50', 'p99', 'endpoint health',
           'refused', 'lost',
           'before-save: proceed / enriched / refused / failed open / failed closed (p50, p99)'],
          'HTML: the site table\'s columns');
my $row = html_site_row($tables, $SITE);
is_deeply($row && [@$row[1 .. 7]],
          [$s->{endpoint}, map { $s->{$_} } @STATES],
          'HTML: the site\'s endpoint and counts = ?json') or diag(explain $row);
is_deeply($row && [@$row[8 .. 10]],
          [sprintf('%d s', $s->{oldest_pending_age_s}),
           sprintf('%.1f ms', $lat->{p50}), sprintf('%.1f ms', $lat->{p99})],
          'HTML: oldest pending, p50 and p99 = ?json') or diag(explain $row);
like($row ? $row->[11] : '', qr/^open: \S/, 'HTML: endpoint health "open: <last error>"');
my $erow = html_site_row($tables, $ESC);
ok($erow && "@$erow[2 .. 7]" eq '0 0 0 0 0 0', "HTML: the site '$ESC' (decoded), zeros");
like($res_html->content, qr{<td>ops-esc&lt;&quot;\\&amp;&gt;</td>},
     'HTML: the site name is escaped');
my($recent) = grep { ($_->{heading} // '') eq 'Recent failures' } @$tables;
my($rrow) = grep { $_->[0] eq $txn{$dead[1]} } @{ $recent ? $recent->{rows} : [] };
is_deeply($rrow && [@$rrow[1 .. 6]], [$SITE, 'member', 'post-create', $dead[1], 1, 400],
          'HTML: "Recent failures" lists the dead letter with its txn')
    or diag(explain $recent);

# mod_status: its page has an "Event Trigger" section, ?auto three lines
my $st = request('main', GET => '/server-status');
is($st->code, 200, 'mod_status: /server-status answers');
my($sec) = grep { ($_->{heading} // '') eq 'Event Trigger' } @{ html_tables($st->content) };
ok($sec, 'mod_status: an "Event Trigger" section with a table')
    or diag(substr $st->content, -3000);
is_deeply($sec && $sec->{head}, $tables->[0]{head}, 'mod_status: the same columns');
my $mrow = html_site_row([$sec || ()], $SITE);
is_deeply($mrow && [@$mrow[0 .. 7, 9, 10, 11]], $row && [@$row[0 .. 7, 9, 10, 11]],
          'mod_status: the same figures for the site');
my(%auto, $sum);
my $auto_ok = wait_for(sub {
    my $r = request('main', GET => '/server-status?auto');
    %auto = $r->content =~ /^(EventTrigger\w+): (\d+)$/mg;
    $sum = status_json();
    return 0 unless $sum && keys %auto == 3;
    return $auto{EventTriggerPending} == $sum->{pending}
        && $auto{EventTriggerDelivered} == $sum->{delivered}
        && $auto{EventTriggerDead} == $sum->{dead};
}, 10);
ok($auto_ok, 'mod_status ?auto: EventTriggerPending, Delivered, Dead = ?json totals')
    or diag(explain [\%auto, $sum]);
cmp_ok($auto{EventTriggerDelivered} // 0, '>=', $s->{delivered},
       'mod_status ?auto: counts all sites');

# -- a site no longer configured; percentiles per site ------------------------
# 1000 delivered events of a site that is not in the configuration (as
# after a site was removed), newer than this site's deliveries, written
# into the outbox directly (state 1: the dispatcher leaves them alone),
# and removed again afterwards.
{
    my $tag = sprintf '%08x', int(rand(0xffffffff));
    my $now = int(Time::HiRes::time() * 1e6);
    my $created = $now - 2_000_000;
    outbox("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
           . "WHERE i < 1000) INSERT INTO et_event (txn, site, object, event, oid, "
           . "state, attempts, created, due, done_at, latency, last_status) "
           . "SELECT printf('%s%024x', '$tag', i), 'ops-gone', 'member', "
           . "'post-create', 'gone-' || i, 1, 1, $created, $created, $now, "
           . "1000, 200 FROM n");
    my($all2, $s2) = site_status($SITE, $VH);
    my($gone) = grep { $_->{site} eq 'ops-gone' } @{ $all2 ? $all2->{sites} : [] };
    ok($gone && !defined $gone->{endpoint} && $gone->{delivered} == 1000
       && $gone->{latency_ms}{samples} == 1000,
       '?json: a site no longer configured: endpoint null, its counts')
        or diag(explain $gone);
    my $grow = html_site_row(html_tables(request($VH, GET => '/et-status')->content),
                             'ops-gone');
    is($grow ? $grow->[1] : undef, '(not configured)', 'HTML: its endpoint "(not configured)"');
    is($s2 ? $s2->{latency_ms}{samples} : undef, $s->{delivered},
       '?json: p50/p99 over the site\'s own latest deliveries (docs/directives.md), '
       . 'not pushed out by newer deliveries of another site');
    outbox("DELETE FROM et_event WHERE site = 'ops-gone' AND txn LIKE '$tag%'");
    my($all3) = site_status($SITE, $VH);
    ok(!grep({ $_->{site} eq 'ops-gone' } @{ $all3 ? $all3->{sites} : [] }),
       '(the 1000 rows are gone again)');
}

# -- methods ------------------------------------------------------------------
my $del = request($VH, DELETE => '/et-status');
is($del->code, 405, 'DELETE on the status page: 405');
my $bad = request($VH, POST => '/et-status', content => 'replay_since=yesterday-ish',
                  headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
is($bad->code, 400, 'POST with a bad replay_since: 400');
