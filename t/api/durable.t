# Durability: events made while the receiver is down wait in the outbox
# through a full stop and start of httpd (Apache::TestServer, as t/TEST
# does it), a restart (SIGHUP) and a graceful restart (SIGUSR1); once the
# receiver is back each arrives exactly once. Then httpd stops while calls
# are under way (a slow receiver): each event is still delivered, a repeated
# call carrying the same txn.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

my $N = 5;                                  # events per phase
my @phases = ('stop and start', 'HUP', 'USR1');

plan tests => @phases * (4 + $N + 2) + 5;

start_console();
my $receiver;                               # pid; down at first

# Events on et_durable (slow retries: 0 2s 3s 5s ...): creates, an update
# and a delete, through both consoles. Returns the cases.
sub make_events {
    my $tag = shift;
    my @cases;
    for my $i (1 .. $N) {
        my $id = uniq("durable-$tag");
        my $console = $i % 2 ? 'proxy' : 'inproc';
        my($method, $path, $event, %a) =
            $i <= 3 ? (POST => "/$console/member", 'post-create',
                       json => { id => $id, i => $i })
          : $i == 4 ? (PUT => "/$console/key/$id", 'post-update', json => { i => $i })
          :           (DELETE => "/$console/application/$id", 'post-delete');
        my $object = $path =~ m{/(member|key|application)\b} ? $1 : '?';
        my $res = request('et_durable', $method => $path, %a);
        push @cases, { id => $id, event => $event, object => $object,
                       ok => $res->is_success,
                       body => expected_object($res, $object) };
    }
    return @cases;
}

sub rows_of {
    my @cases = @_;
    my $in = join ',', map { sql_quote($_->{id}) } @cases;
    return outbox("SELECT oid, state, attempts, last_error FROM et_event "
                  . "WHERE oid IN ($in)");
}

for my $phase (@phases) {
    my @cases = make_events($phase =~ /^\w+$/ ? $phase : 'stop');
    is(scalar(grep { $_->{ok} } @cases), $N, "$phase: the console saved $N objects");

    # the dispatcher tried each once and failed (connection refused)
    my $tried = wait_for(sub {
        my $rows = rows_of(@cases);
        @$rows == $N && !grep { $_->{state} != 0 || $_->{attempts} < 1 } @$rows;
    }, 30);
    ok($tried, "$phase: all $N events pending after a failed attempt")
        or diag(explain rows_of(@cases));

    my $restarted;
    if ($phase eq 'stop and start') {
        my $stopped = httpd_stop();
        my $rows = rows_of(@cases);
        ok($stopped > 0 && @$rows == $N && !grep({ $_->{state} != 0 } @$rows),
           "$phase: httpd stopped, the events wait in the outbox")
            or diag(explain $rows);
        $receiver = start_receiver(truncate => !defined $receiver);
        $restarted = httpd_start();
    }
    else {
        $restarted = httpd_signal_restart($phase);
        ok($restarted, "$phase: httpd restarted");
        $receiver = start_receiver(truncate => !defined $receiver);
    }
    ok($restarted, "$phase: httpd runs again");

    wait_for(sub { !grep { !calls_for_event($_->{id}, $_->{event}) } @cases }, 60);
    ok(marker(site => 'et_durable'), "$phase: marker call arrived");

    for my $c (@cases) {
        check_call([calls_for_event($c->{id}, $c->{event})],
                   name => "$phase: $c->{event} $c->{object}",
                   root => '/hooks/durable', object => $c->{object},
                   id => $c->{id}, event => $c->{event}, body => $c->{body});
    }

    # The receiver records a call before the dispatcher writes its outcome
    # (outcomes are flushed once per dispatcher loop): wait for the outbox.
    my $rows;
    wait_for(sub { $rows = rows_of(@cases);
                   @$rows == $N && !grep { $_->{state} != 1 } @$rows }, 30);
    ok(@$rows == $N && !grep({ $_->{state} != 1 } @$rows),
       "$phase: all delivered in the outbox") or diag(explain $rows);

    stop_proc($receiver);                     # down again for the next phase
}

# -- httpd stops while calls are under way ----------------------------------------
{
    $receiver = start_receiver(delay => 3);       # records, then answers 3s later
    my @cases = make_events('inflight');
    my $ids = join ' ', map { $_->{id} } @cases;
    my $arrived = wait_for(sub { !grep { !calls_for_event($_->{id}, $_->{event}) } @cases },
                           20);
    ok($arrived, 'in flight: the calls reached the slow receiver');

    my $t0 = time;
    my $stopped = httpd_stop();
    stop_proc($receiver);
    ok($stopped > 0, 'in flight: httpd stopped (in ' . (time - $t0) . 's)');
    $receiver = start_receiver();
    ok(httpd_start(), 'in flight: httpd runs again');

    my $rows;
    wait_for(sub { $rows = rows_of(@cases);
                   @$rows == $N && !grep { $_->{state} != 1 } @$rows }, 60);
    ok(@$rows == $N && !grep({ $_->{state} != 1 } @$rows),
       'in flight: every event delivered after the restart') or diag(explain $rows);

    my @bad;
    for my $c (@cases) {
        my @calls = calls_for_event($c->{id}, $c->{event});
        my %txn = map { my %q = parse_query($_->{query}); ($q{txn} => 1) } @calls;
        push @bad, "$c->{id}: " . scalar(@calls) . ' calls, ' . keys(%txn) . ' txns'
            if keys %txn != 1 || @calls > 2;
        note("$c->{id}: " . scalar(@calls) . ' call(s)');
    }
    is(scalar @bad, 0, 'in flight: at most one repeat per event, with the same txn')
        or diag(join "\n", @bad);
    stop_proc($receiver);
}
