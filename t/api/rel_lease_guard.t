# Claim-ahead never calls an event twice. The dispatcher leases a few
# events beyond its free workers; one that waits in the queue behind slow
# calls until its lease could run out mid-call goes back in line untried
# (ET01019) instead of being called on an expiring lease (which another
# claim could take: a second call). A standalone httpd (EventTriggerWorkers
# and EventTriggerLease are per instance): one worker, a 3 s lease, a 2 s
# timeout, and a receiver that answers each call after 1.5 s. Three events
# are claimed together (no call has been timed yet); the second and third
# start 1.5 s and 3 s after the claim, past lease - timeout = 1 s: they go
# back, and are delivered afterwards, one call each.
#
# Then the same for a paused endpoint's probe: an outbox with two events of
# the slow site and one of a site whose endpoint is paused, its pause over
# (a site no longer configured, so that it is claimed after the slow one).
# The probe is claimed with the other two and queued behind the first slow
# call until its lease could run out: it goes back untried, and the site
# is probed again (its circuit reopened, not left "probing" for good); the
# event is delivered.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);
use Time::HiRes ();

plan tests => 11;

my %P;
# (not a map over qw(): reading the configuration assigns $_)
for my $name (qw(ET_REL_MINI_PORT ET_REL_MINI_RECEIVER_PORT
                  ET_REL_MINI_RECEIVER2_PORT)) {
    $P{$name} = ops_define($name);
}
my $dir = t_path('t_dir', 'tmp', 'rel_lease_guard');
remove_tree($dir);
make_path("$dir/logs");
my $rlog = receiver_log('-slow');
my $rpid = start_receiver(port => $P{ET_REL_MINI_RECEIVER_PORT}, log => $rlog,
                          truncate => 1, delay => 1.5);

my $conf = mini_httpd_conf($dir, [$P{ET_REL_MINI_PORT}], <<"EOF");
LogLevel warn eventtrigger:info
EventTriggerStore sqlite3:$dir/outbox.db
EventTriggerWorkers 1
EventTriggerLease 3s
EventTriggerTimeout 2s
EventTriggerConnectTimeout 1s
EventTriggerPollInterval 200ms
EventTriggerSiteName lease-guard
EventTriggerEndpoint http://127.0.0.1:$P{ET_REL_MINI_RECEIVER_PORT}/hooks/slow
@{[MINI_CONSOLE]}
EOF
my $pid = mini_httpd_start($conf, $P{ET_REL_MINI_PORT}, "$dir/logs/stdout");

# three objects at once: the dispatcher claims them in one round
my @ids = map { uniq('guard') } 1 .. 3;
is(mini_post_members($P{ET_REL_MINI_PORT}, @ids), 3,
   'the console saved three objects');

my($done, $rows) = mini_wait_delivered("$dir/outbox.db", 40, ', attempts', @ids);
ok($done, 'all three delivered in the end') or diag(explain $rows);

my @counts = map { scalar calls_for_id($_, $rlog) } @ids;
is_deeply(\@counts, [1, 1, 1], 'each called exactly once')
    or diag(explain \@counts);

my @log = do { open my $l, '<', "$dir/logs/error_log" or die $!; <$l> };
my @guard = grep { /ET01019: txn=\S+ waited for a free worker/ } @log;
cmp_ok(scalar @guard, '>=', 1,
       'a queued event whose lease would run out went back untried (ET01019)')
    or diag(join '', grep { /eventtrigger/ } @log);
is(scalar(grep { /ET01002/ } @log), 0, 'no lease expired during a call (ET01002)');
# going back in line untried does not use up an attempt
is(scalar(grep { $_->{attempts} != 1 } @$rows), 0,
   'each took one attempt: going back in line cost none')
    or diag(explain $rows);

mini_httpd_stop($pid);

# --- a probe queued behind a slow call ------------------------------------
my $rlog2 = receiver_log('-fast');
my $rpid2 = start_receiver(port => $P{ET_REL_MINI_RECEIVER2_PORT}, log => $rlog2,
                           truncate => 1);
my $db = "$dir/outbox.db";
unlink $db, "$db-wal", "$db-shm";
# httpd makes the schema; the rows are then written as an earlier run
# would have left them (each its object's first pending event: head 1)
$pid = mini_httpd_start($conf, $P{ET_REL_MINI_PORT}, "$dir/logs/stdout");
# httpd listens before its post_config makes the schema: wait for it
wait_for(sub {
    -e $db && @{ sqlite_rows($db, "SELECT name FROM sqlite_master"
                                  . " WHERE name = 'et_circuit'") };
}, 30);
mini_httpd_stop($pid);
my $now = int(Time::HiRes::time() * 1e6);
my($a1, $a2, $b1) = (uniq('guard'), uniq('guard'), uniq('probe'));
my %txn = map { $_ => join '', map { sprintf '%04x', int rand 65536 } 1 .. 8 }
    ($a1, $a2, $b1);
my $slow = "http://127.0.0.1:$P{ET_REL_MINI_RECEIVER_PORT}/hooks/slow";
my $fast = "http://127.0.0.1:$P{ET_REL_MINI_RECEIVER2_PORT}/hooks/paused";
my $sql = join '', map {
    my($site, $oid, $ep, $n) = @$_;
    "INSERT INTO et_event (txn, site, object, event, oid, url, content_type,"
    . " body, state, created, due, head) VALUES ('$txn{$oid}', '$site', 'member',"
    . " 'post-update', '$oid', '$ep/v1/member/$oid?event=post-update&txn=$txn{$oid}',"
    . " 'application/json', '{\"id\":\"$oid\"}', 0, @{[$now + $n]}, @{[$now + $n]}, 1);"
} (['lease-guard', $a1, $slow, 1], ['lease-guard', $a2, $slow, 2],
   ['paused-gone', $b1, $fast, 3]);
# paused after 3 failures; the pause ended a second ago
$sql .= "INSERT INTO et_circuit (site, state, failures, open_until, changed,"
      . " last_error) VALUES ('paused-gone', 1, 3, @{[$now - 1_000_000]},"
      . " @{[$now - 11_000_000]}, 'HTTP 503');";
system('sqlite3', '-cmd', '.timeout 5000', $db, $sql) == 0
    or die "sqlite3 could not write the outbox\n";
my $from = -s "$dir/logs/error_log" // 0;
$pid = mini_httpd_start($conf, $P{ET_REL_MINI_PORT}, "$dir/logs/stdout");

my $b;
ok(wait_for(sub {
    $b = sqlite_rows($db, "SELECT state, attempts FROM et_event WHERE oid = '$b1'")->[0];
    $b && $b->{state} == 1;
}, 30), 'the paused endpoint was probed again and the event delivered')
    or diag(explain $b);
is(scalar calls_for_id($b1, $rlog2), 1, 'with one call');
my $since = do {
    open my $l, '<', "$dir/logs/error_log" or die $!;
    local $/;
    substr(<$l>, $from);
};
like($since, qr/ET01019: txn=$txn{$b1} waited/,
     'the probe went back untried (ET01019) first')
    or diag($since);
like($since, qr/ET01012: endpoint of site paused-gone answers again/,
     'and its site is healthy again (ET01012)');
($done, $rows) = mini_wait_delivered($db, 30, '', $a1, $a2);
ok($done, 'the slow site\'s two events delivered too') or diag(explain $rows);

mini_httpd_stop($pid);
stop_proc($rpid);
stop_proc($rpid2);
