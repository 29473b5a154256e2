# The dispatcher sleeps until its next piece of work, not until its poll
# interval: with EventTriggerPollInterval at 10 minutes, a failed call's
# retry is made when its retry delay (500 ms) says, both for an event the
# intake handed over leased and for one the claim loop claimed, and a
# burst of saves is delivered at once; and an event that waits behind its
# object's earlier one does not hide that one's retry (the next due time
# is the soonest one after now). A standalone httpd whose receiver answers
# 503 twice before it answers 200.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);
use HTTP::Request ();
use LWP::UserAgent ();
use JSON::PP ();

plan tests => 12;

my %P;
for my $name (qw(ET_REL_WAKE_PORT ET_REL_WAKE_RECEIVER_PORT)) {
    $P{$name} = ops_define($name);
}
my $dir = t_path('t_dir', 'tmp', 'rel_wakeup');
remove_tree($dir);
make_path("$dir/logs");
my $rlog = receiver_log('-wakeup');
my $rpid = start_receiver(port => $P{ET_REL_WAKE_RECEIVER_PORT},
                          log => $rlog, truncate => 1);
my $ua = LWP::UserAgent->new(timeout => 10);
sub plan_for {    # the receiver answers the calls for $id 503, 503, then 200
    my $id = shift;
    my $res = $ua->request(HTTP::Request->new(
        PUT => "http://127.0.0.1:$P{ET_REL_WAKE_RECEIVER_PORT}/_plan",
        ['Content-Type' => 'application/json'],
        JSON::PP->new->encode({ path => "/hooks/wake/v1/member/$id",
                                actions => [503, 503], default => 200 })));
    return $res->is_success;
}

my $conf = mini_httpd_conf($dir, [$P{ET_REL_WAKE_PORT}], <<"EOF2");
LogLevel warn
EventTriggerStore sqlite3:$dir/outbox.db
EventTriggerLease 20s
EventTriggerTimeout 5s
EventTriggerPollInterval 10m
EventTriggerRetry 0 500ms 500ms 500ms
EventTriggerCircuitBreaker off
EventTriggerSiteName wake
EventTriggerEndpoint http://127.0.0.1:$P{ET_REL_WAKE_RECEIVER_PORT}/hooks/wake
@{[MINI_CONSOLE]}
EOF2
my $pid = mini_httpd_start($conf, $P{ET_REL_WAKE_PORT}, "$dir/logs/stdout");
my $db = "$dir/outbox.db";

# The calls' times for $id, once there are $n (or after 8 s).
sub call_times {
    my($id, $n) = @_;
    my @c;
    wait_for(sub { @c = calls_for_id($id, $rlog); @c >= $n }, 8);
    return map { $_->{time} } @c;
}
sub gaps { my @t = @_; return map { $t[$_] - $t[$_ - 1] } 1 .. $#t }

# 1. one save: its first call and both retries come at their delays
my $one = uniq('wake');
ok(plan_for($one), 'the receiver will answer 503 twice');
is(mini_post_members($P{ET_REL_WAKE_PORT}, $one), 1, 'saved');
my @t = call_times($one, 3);
is(scalar @t, 3, 'three calls within 8 s, not a poll interval') or diag(explain \@t);
my @g = gaps(@t);
ok(@g == 2 && !grep({ $_ < 0.25 || $_ > 3 } @g),
   'each retry about 500 ms after the failure before it') or diag(explain \@g);

# 2. two objects saved together, the second one's calls behind the first
# one's retries in the claim loop's hands as well
my @two = map { uniq('wake') } 1 .. 2;
ok((plan_for($two[0]) && plan_for($two[1])), 'the receiver will answer 503 twice for each');
is(mini_post_members($P{ET_REL_WAKE_PORT}, @two), 2, 'both saved');
my @t0 = call_times($two[0], 3);
my @t1 = call_times($two[1], 3);
is(scalar(@t0) + scalar(@t1), 6, 'three calls each within 8 s') or diag(explain [\@t0, \@t1]);
my($done, $rows) = mini_wait_delivered($db, 5, '', $one, @two);
ok($done, 'all delivered') or diag(explain $rows);
my $slow = grep { $_ > 3 } gaps(@t0), gaps(@t1);
is($slow, 0, 'no retry waited for the poll interval') or diag(explain [\@t0, \@t1]);

# 3. two saves of one object: the second is due at once but waits behind
# the first, whose retries must still come at their delays
my $same = uniq('wake');
ok(plan_for($same), 'the receiver will answer 503 twice (one object, two saves)');
is(mini_post_members($P{ET_REL_WAKE_PORT}, $same, $same), 2, 'saved twice');
my @ts = call_times($same, 4);
my $late = grep { $_ > 3 } gaps(@ts);
ok(@ts == 4 && !$late,
   'three calls of the first and then the second within 8 s, none after a poll interval')
    or diag(explain \@ts);

mini_httpd_stop($pid);
stop_proc($rpid);
