# The children hand their events to the dispatcher's intake (a Unix socket
# in DefaultRuntimeDir), which stores every child's events in one group;
# a child that cannot reach it, or hears no "stored" within 5 s, stores the
# event itself, and an event handed over twice is queued once. A
# standalone httpd (its dispatcher is stopped and killed here), the
# module's messages at debug so that every fallback (ET01026) shows:
# 1. the intake listens, and three saved objects are stored through it
#    (no ET01026), leased to the dispatcher as they are stored (ET01039),
#    and delivered once each;
# 2. with the dispatcher stopped (SIGSTOP), a save still succeeds after the
#    5 s wait, the child stores the event (ET01026 at warn, "in time"); once
#    the dispatcher continues, the intake reads the same event too and the
#    outbox keeps one: called once;
# 3. the dispatcher killed (SIGKILL) and restarted by httpd: the children's
#    kept connections are dead, a new one reaches the new intake (no
#    ET01026);
# 4. the receiver down: with its site paused, fresh events are stored
#    plainly, then delivered in order once it answers; caught up again,
#    fresh events are leased as they are stored.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(time);
use POSIX ();

plan tests => 29;

my %P;
# (not a map over qw(): reading the configuration assigns $_)
for my $name (qw(ET_REL_INTAKE_PORT ET_REL_INTAKE_RECEIVER_PORT)) {
    $P{$name} = ops_define($name);
}
my $dir = t_path('t_dir', 'tmp', 'rel_intake');
remove_tree($dir);
make_path("$dir/logs");
my $rlog = receiver_log('-intake');
my $rpid = start_receiver(port => $P{ET_REL_INTAKE_RECEIVER_PORT},
                          log => $rlog, truncate => 1);

my $conf = mini_httpd_conf($dir, [$P{ET_REL_INTAKE_PORT}], <<"EOF2");
LogLevel warn eventtrigger:debug
EventTriggerStore sqlite3:$dir/outbox.db
EventTriggerLease 20s
EventTriggerTimeout 5s
EventTriggerPollInterval 200ms
EventTriggerRetry 0 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms
EventTriggerCircuitBreaker 2 1s 1s
EventTriggerSiteName intake
EventTriggerEndpoint http://127.0.0.1:$P{ET_REL_INTAKE_RECEIVER_PORT}/hooks/intake
@{[MINI_CONSOLE]}
EOF2
my $pid = mini_httpd_start($conf, $P{ET_REL_INTAKE_PORT}, "$dir/logs/stdout");
my $elog = "$dir/logs/error_log";
my $db = "$dir/outbox.db";

sub grep_log { my $re = shift; return grep { /$re/ } read_lines($elog) }
sub intake_up {    # -> the pid that says its intake listens, once it does
    my $after = shift // 0;
    my $up;
    wait_for(sub {
        ($up) = grep { $_ != $after }
                map { /\[pid (\d+):tid \d+\] ET01032: / ? $1 : () } read_lines($elog);
        $up;
    }, 20);
    return $up;
}

# 1. through the intake
my $d1 = intake_up();
ok($d1, 'the dispatcher listens (ET01032)');
my @socks = glob "$dir/logs/eventtrigger.*.sock";
is(scalar @socks, 1, 'its socket is in DefaultRuntimeDir') or diag(explain \@socks);
my @ids = map { uniq('intake') } 1 .. 3;
is(mini_post_members($P{ET_REL_INTAKE_PORT}, @ids), 3, 'the console saved three objects');
my($done, $rows) = mini_wait_delivered($db, 20, '', @ids);
ok($done, 'all three delivered') or diag(explain $rows);
is_deeply([map { scalar calls_for_id($_, $rlog) } @ids], [1, 1, 1], 'each called once');
is(scalar(grep_log(qr/ET01026/)), 0, 'stored by the intake: no child stored one itself (ET01026)')
    or diag(join '', grep_log(qr/ET01026/));
# the site is healthy and has no backlog: the intake stores fresh events
# leased to the dispatcher and hands them to its calls, no claim
my $leased = 0;
$leased += $_ for map { /ET01039: intake stored \d+ event\(s\), (\d+) of them leased/ ? $1 : () }
                  read_lines($elog);
cmp_ok($leased, '>=', 1, 'fresh events went to the calls as they were stored (ET01039)')
    or diag(join '', grep_log(qr/ET01039/));

# 2. the dispatcher stopped: the child waits 5 s, then stores the event
# itself. The save runs in a process of its own: the dispatcher may have
# been stopped holding the outbox lock, and then the child's own store
# waits for SIGCONT as well.
kill STOP => $d1;
my $late = uniq('intake');
my $t0 = time;
my $kid = fork // die "fork: $!";
unless ($kid) {
    my $n = mini_post_members($P{ET_REL_INTAKE_PORT}, $late);
    POSIX::_exit($n == 1 ? 0 : 1);
}
my @fell;
wait_for(sub { @fell = grep_log(qr/ET01026: .*did not answer in time/) }, 20);
my $took = time - $t0;
is(scalar @fell, 1, 'with the dispatcher stopped, the child stores the event itself (ET01026)')
    or diag(join '', grep_log(qr/ET01026/));
like($fell[0] // '', qr/\[eventtrigger:warn\]/, 'and says so at warn');
cmp_ok($took, '>=', 4.5, "after the intake's 5 s wait") or diag("took $took s");
kill CONT => $d1;
waitpid $kid, 0;
is($? >> 8, 0, 'the save succeeded');
($done, $rows) = mini_wait_delivered($db, 20, '', $late);
ok($done, 'delivered once the dispatcher goes on') or diag(explain $rows);
# the intake read the same event after the child stored it: one row, one
# call (the row is delivered: there is no second call to wait for)
my $stored = sqlite_rows($db, "SELECT oid FROM et_event WHERE oid = '$late'");
is(scalar @$stored, 1, 'handed over twice, queued once');
wait_for(sub { scalar calls_for_id($late, $rlog) }, 5);
is(scalar(calls_for_id($late, $rlog)), 1, 'called once');
is(scalar(grep_log(qr/ET01030/)), 0, "the intake's second copy was no error (ET01030)");

# 3. the dispatcher killed: httpd starts another, the children reconnect.
# First one more save, so that the child keeps a connection to the intake
# that is about to die (the last one timed out and was closed).
my $kept = uniq('intake');
is(mini_post_members($P{ET_REL_INTAKE_PORT}, $kept), 1, 'one more save, through the intake');
kill KILL => $d1;
my $d2 = intake_up($d1);
ok($d2 && $d2 != $d1, 'httpd restarted the dispatcher, its intake listens')
    or diag("old $d1, new " . ($d2 // 'none'));
my $before = () = grep_log(qr/ET01026/);
my @more = map { uniq('intake') } 1 .. 3;
is(mini_post_members($P{ET_REL_INTAKE_PORT}, @more), 3, 'the console saved three more');
($done, $rows) = mini_wait_delivered($db, 20, '', @more);
ok($done, 'delivered') or diag(explain $rows);
my $after = () = grep_log(qr/ET01026/);
is($after, $before, 'through the new intake: a dead kept connection is replaced, no fallback')
    or diag(join '', grep_log(qr/ET01026/));

# 4. the endpoint down: once its site is paused, fresh events are stored
# plainly (the claim loop takes them when it answers again, in order);
# once that backlog is delivered, fresh events are leased again
my $obj = uniq('intake');
stop_proc($rpid);
is(mini_post_members($P{ET_REL_INTAKE_PORT}, $obj), 1, 'saved with the receiver down');
ok(wait_for(sub { grep_log(qr/ET01010: endpoint of site intake paused/) }, 20),
   'two failed calls pause the site (ET01010)');
my $off = log_offset($elog);
my $other = uniq('intake');
is(mini_post_members($P{ET_REL_INTAKE_PORT}, $obj, $other), 2,
   'while paused, the same object saved again and another one');
my @plain;
wait_for(sub { @plain = grep { /ET01039/ } lines_since($elog, $off); @plain >= 2 }, 10);
is(scalar(grep { /stored \d+ event\(s\), 0 of them leased/ } @plain), scalar(@plain),
   'while paused, none is leased as it is stored (ET01039)') or diag(join '', @plain);
$rpid = start_receiver(port => $P{ET_REL_INTAKE_RECEIVER_PORT}, log => $rlog);
($done, $rows) = mini_wait_delivered($db, 30, '', $obj, $obj, $other);
ok($done, 'all delivered once the receiver answers') or diag(explain $rows);
my @want = map { $_->{txn} } @{ sqlite_rows($db, "SELECT txn FROM et_event WHERE oid = '$obj' ORDER BY id") };
my @got = map { +{ parse_query($_->{query}) }->{txn} } calls_for_id($obj, $rlog);
is_deeply(\@got, \@want, 'called once each, in the order saved') or diag(explain [\@got, \@want]);
$off = log_offset($elog);
my $fresh = uniq('intake');
is(mini_post_members($P{ET_REL_INTAKE_PORT}, $fresh), 1, 'a fresh save after the backlog');
($done, $rows) = mini_wait_delivered($db, 20, '', $fresh);
ok($done, 'delivered') or diag(explain $rows);
like(join('', grep { /ET01039/ } lines_since($elog, $off)), qr/stored 1 event\(s\), 1 of them leased/,
     'caught up: leased as it was stored again (ET01039)');

mini_httpd_stop($pid);
stop_proc($rpid);
