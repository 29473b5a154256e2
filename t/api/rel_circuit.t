# An endpoint down for a while, then back (site et_cb of
# t/conf/reliability.conf.in: EventTriggerCircuitBreaker 3 1s 2s,
# EventTriggerRetry 0 500ms 1s 2s 2s ..., 10 attempts, timeout 1s).
#
# After 3 consecutive failures the endpoint is paused (ET01010, once): no
# call for 1s, then exactly one call (the probe) at a time, 1s and then 2s
# apart (ET01011 per failed probe). Events made while it is paused wait
# without using up attempts; per-object order holds. When a probe gets a
# 200 the circuit closes (ET01012, once) and everything is delivered:
# nothing lost, nothing dead.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETRel qw(:all);

my $ROOT = '/hooks/cb';
my $SLACK = 2.5;
my $DOWN_FOR = 7;                    # seconds the endpoint stays down once paused

plan tests => 24;

my $receiver = start_fault_receiver(truncate => 1);
my $mark = errlog_mark();

sub site_status {
    my $st = status_json() or return undef;
    my($s) = grep { ($_->{endpoint} // '') =~ m{\Q$ROOT\E$} } @{ $st->{sites} || [] };
    return $s;
}

sub create {
    my($id, %data) = @_;
    my $res = request('et_cb', POST => '/inproc/member', json => { id => $id, %data });
    return $res->code == 201;
}

# -- healthy: one call, the circuit closed ------------------------------------------
my $first = uniq('cb-first');
create($first);
ok(wait_row($first, 1, 20), 'healthy: delivered');

# -- down: three events fail and open the circuit -------------------------------------
set_plan({ prefix => "$ROOT/", actions => [], default => 503 });
my $t_down = Time::HiRes::time();
my @opening = map { uniq("cb-open$_") } 1 .. 3;
create($_) for @opening;
my $opened = wait_for(sub { errlog_count($mark, qr/ET01010: .*site \S+ /) }, 20);
my $t_open = Time::HiRes::time();
ok($opened, 'down: ET01010 says the endpoint is paused');

# While it is paused, more events: new objects, and updates of one object
# (in order), and an update of an object whose first event failed.
my @later = map { uniq("cb-later$_") } 1 .. 4;
create($_) for @later;
my $seq_obj = uniq('cb-seq');
create($seq_obj, seq => 0);
for my $i (1 .. 4) {
    request('et_cb', PUT => "/inproc/member/$seq_obj", json => { seq => $i });
}
request('et_cb', PUT => "/inproc/member/$opening[0]", json => { seq => 1 });
my @all = (@opening, @later, $seq_obj);

my $st = site_status();
like($st && $st->{circuit}{state} // '', qr/^(?:open|probing)$/,
     'down: the status page shows the circuit open') or diag(explain $st);

# stay down a while; probes come and fail
wait_for(sub { Time::HiRes::time() - $t_open >= $DOWN_FOR }, $DOWN_FOR + 1);
my($rc, $out) = etctl('stats');
like($out, qr/^\S+\t(?:open|probing)\t\d+\t/m, 'down: etctl stats shows the endpoint paused')
    or diag($out);

# -- back: the next probe succeeds ----------------------------------------------------
clear_plans();
my $t_up = Time::HiRes::time();
my %rows;
wait_for(sub {
    %rows = map { ($_ => row_of($_)) } @all;
    !grep { !$_ || $_->{state} != 1 } values %rows
}, 30);
my $t_done = Time::HiRes::time();
my @undelivered = grep { !$rows{$_} || $rows{$_}{state} != 1 } @all;
is(scalar @undelivered, 0, 'back: every event delivered, none dead')
    or diag(explain [map { $rows{$_} } @undelivered]);

# -- what the receiver saw -------------------------------------------------------------
my @calls = grep { $_->{path} =~ m{^\Q$ROOT\E/} } calls(fault_log());
my @failed = grep { ($_->{answer} // '') eq '503' } @calls;
my $last_fail_t = @failed ? $failed[-1]{time} : 0;

# The circuit opened at the 3rd failure; after it, until the endpoint was
# back, every call is a probe: one at a time, a pause (1s, then 2s) apart.
my @down = grep { $_->{time} >= $t_down } @failed;
my $third = $down[2] // {};
my @probes = grep { $_->{time} > ($third->{time} // 0) + 0.05 } @down;
my @late_probes = @probes;
my @pause_gaps;
my $prev = $third->{time} // 0;
for my $p (@probes) {
    push @pause_gaps, $p->{time} - $prev;
    $prev = $p->{time};
}
# the pauses: 1s, then doubled to 2s (the maximum)
my @bad;
for my $i (0 .. $#pause_gaps) {
    my $pause = $i == 0 ? 1 : 2;
    push @bad, sprintf('probe %d came %.3fs after the previous failure (pause %ds)',
                       $i + 1, $pause_gaps[$i], $pause)
        unless in_range($pause_gaps[$i], $pause - 0.05, $pause + $SLACK);
}
ok(@probes >= 2 && !@bad, 'down: one probe at a time, a pause apart (1s, 2s, 2s, ...)')
    or diag(join("\n", @bad) . "\n" . fmt_attempts(@down));
my $max_probes = 1 + int(($DOWN_FOR + $SLACK) / 2) + 1;
ok(@probes <= $max_probes, "down: no more calls than probes (" . scalar(@probes)
   . " <= $max_probes) while paused")
    or diag(fmt_attempts(@down));

# the calls while paused: only probes (a call that overlaps a probe would
# be a second call at a time); the receiver answers 503 at once, so two
# calls less than 0.5s apart mean two went out together.
my @close = grep { $pause_gaps[$_] < 0.5 } 0 .. $#pause_gaps;
is(scalar @close, 0, 'down: never two calls at once while paused');

# after it is back, the first call succeeds and closes the circuit
my @ok = grep { ($_->{answer} // '') eq '200' && $_->{time} >= $t_up } @calls;
ok(@ok >= @all, 'back: the calls arrived') or diag(scalar @ok);

# -- attempts: waiting used none ---------------------------------------------------------
my %calls_of;
for my $c (@calls) {
    my @segs = split m{/}, $c->{path};
    $calls_of{ seg_decode($segs[-1]) }++;
}
my $in = join ',', map { sql_quote($_) } @all;
my %att_sum = map { ($_->{oid} => $_->{n}) }
    @{ outbox("SELECT oid, SUM(attempts) AS n FROM et_event WHERE oid IN ($in) GROUP BY oid") };
my @mismatch = grep { ($att_sum{$_} // -1) != ($calls_of{$_} // 0) } @all;
is(scalar @mismatch, 0, 'attempts: the outbox counts exactly the calls made')
    or diag(explain [map { [$_, $att_sum{$_}, $calls_of{$_}] } @mismatch]);

my %probe_of;
for my $p (@probes) {
    my @segs = split m{/}, $p->{path};
    $probe_of{ seg_decode($segs[-1]) }++;
}
my @used = grep { ($rows{$_}{attempts} // 0) > 1 + ($probe_of{$_} // 0) } @later;
is(scalar @used, 0, 'attempts: events made while paused used one attempt per probe they '
   . 'served (a probe is the event due soonest), plus the delivery; none for waiting')
    or diag(explain [map { [$_, $rows{$_}{attempts}, $probe_of{$_} // 0] } @used]);

# -- order of one object's events -------------------------------------------------------
my @seq = map { my $b = eval { json_text($_->{body}) }; $b ? $b->{seq} : -1 }
    attempts_of($seq_obj);
my @sorted = sort { $a <=> $b } @seq;
is("@seq", "@sorted", 'order: the updates of one object arrived in capture order')
    or diag("@seq");
my @ev_open0 = map { event_of($_) } attempts_of($opening[0]);
my $first_update = (grep { $ev_open0[$_] eq 'post-update' } 0 .. $#ev_open0)[0] // 0;
ok(!grep({ $_ eq 'post-create' } @ev_open0[$first_update .. $#ev_open0]),
   'order: an update waited for its create, which failed first')
    or diag("@ev_open0");

# -- the log: each change once ------------------------------------------------------------
my @l10 = errlog_since($mark, qr/ET01010:/);
my @l11 = errlog_since($mark, qr/ET01011:/);
my @l12 = errlog_since($mark, qr/ET01012:/);
is(scalar @l10, 1, 'log: ET01010 (paused) once') or diag(join '', @l10);
is(scalar @l11, scalar @probes, 'log: ET01011 once per failed probe')
    or diag(join('', @l11) . fmt_attempts(@probes));
is(scalar @l12, 1, 'log: ET01012 (answers again) once') or diag(join '', @l12);

$st = site_status();
is($st && $st->{circuit}{state}, 'closed', 'the status page shows the circuit closed again')
    or diag(explain $st);

# -- the receiver stopped (connection refused), then started again -----------------------
# The calls cannot be counted at the receiver: the dispatcher's log
# (ET01001, one line per attempt) tells them.
stop_proc($receiver);
$mark = errlog_mark();
my @gone = map { uniq("cb-gone$_") } 1 .. 3;
create($_) for @gone;
ok(wait_for(sub { errlog_count($mark, qr/ET01010: .*site \S+ /) }, 20),
   'refused: ET01010, the endpoint is paused');
my $t_open2 = Time::HiRes::time();
my @waiting = map { uniq("cb-wait$_") } 1 .. 3;
create($_) for @waiting;
wait_for(sub { Time::HiRes::time() - $t_open2 >= 5 }, 6);
$receiver = start_fault_receiver();
my %rows2;
wait_for(sub {
    %rows2 = map { ($_ => row_of($_)) } @gone, @waiting;
    !grep { !$_ || $_->{state} != 1 } values %rows2
}, 30);
is(scalar(grep { $rows2{$_} && $rows2{$_}{state} == 1 } @gone, @waiting), 6,
   'refused: every event delivered once the receiver is back');
my %fails;
for my $id (@gone, @waiting) {
    my $txn = $rows2{$id} ? $rows2{$id}{txn} : 'none';
    $fails{$id} = errlog_count($mark, qr/ET01001: will retry .*txn=\Q$txn\E .*status=0 /);
}
is_deeply([map { $rows2{$_} ? $rows2{$_}{attempts} - $fails{$_} : -1 } @gone, @waiting],
          [(1) x 6], 'refused: attempts = failed calls (logged) + the delivery')
    or diag(explain [\%fails, \%rows2]);
my $n_probes = -3;
$n_probes += $_ for values %fails;
my $max2 = 1 + int((5 + $SLACK) / 2) + 1;
ok($n_probes >= 1 && $n_probes <= $max2,
   "refused: one probe per pause while it was down ($n_probes <= $max2)")
    or diag(explain \%fails);
is(errlog_count($mark, qr/ET01010:/), 1, 'refused: ET01010 once');
is(errlog_count($mark, qr/ET01012:/), 1, 'refused: ET01012 once');
my @probe_lines = errlog_since($mark, qr/ET01011:/);
my $failed_probes = 0;
$failed_probes += $_ for map { $fails{$_} } @gone, @waiting;
is(scalar @probe_lines, $failed_probes - 3, 'refused: after the 3 failures that paused it, '
   . 'every failed call was a probe (ET01011)') or diag(join '', @probe_lines);

stop_proc($receiver);
