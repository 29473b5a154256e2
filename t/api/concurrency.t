# Many admins at once: parallel clients on several sites and both consoles
# write to the outbox from several httpd children while the dispatcher
# delivers. Every request succeeds and every event arrives exactly once.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use POSIX ();
use File::Temp ();
use ETTest qw(:all);

my $PROCS = 16;
my $EACH = 25;

plan tests => 7;

start_console();
start_receiver(truncate => 1);

my $errlog = t_path('t_logs', 'error_log');
my $errlog_start = -s $errlog // 0;

# Each client process makes $EACH requests and writes "status id event" lines.
my @objects = qw(member application key package_key);
my $dir = File::Temp->newdir;
my @kids;
for my $p (1 .. $PROCS) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $ok = eval {
            open my $out, '>', "$dir/$p" or die $!;
            for my $i (1 .. $EACH) {
                my $id = uniq("conc-$p-$i");
                my $site = $i % 2 ? 'et_json' : 'et_form';
                my $console = $i % 3 ? 'proxy' : 'inproc';
                my $obj = $objects[$i % 4];
                my($m, $path, $ev, %a) = $i % 5 == 0
                    ? (PUT => "/$console/$obj/$id", 'post-update', json => { i => $i })
                    : (POST => "/$console/$obj", 'post-create',
                       json => { id => $id, p => $p, i => $i });
                my $res = request($site, $m => $path, %a);
                print $out join(' ', $res->code, $id, $ev), "\n";
            }
            close $out;
            1;
        };
        POSIX::_exit($ok ? 0 : 1);
    }
    push @kids, $pid;
}
my $bad_exit = 0;
for (@kids) { waitpid $_, 0; $bad_exit++ if $? }
is($bad_exit, 0, "$PROCS client processes finished");

my @made;
for my $p (1 .. $PROCS) {
    open my $in, '<', "$dir/$p" or next;
    push @made, map { chomp; [split / /] } <$in>;
}
is(scalar(grep { $_->[0] =~ /^20[01]$/ } @made), $PROCS * $EACH,
   'every admin request succeeded')
    or diag(explain [grep { $_->[0] !~ /^20[01]$/ } @made]);

my %want = map { ($_->[1] => $_->[2]) } @made;

# calls per decoded id, from one read of the receiver's log
sub counts {
    my %count;
    for my $c (calls()) {
        my @segs = split m{/}, $c->{path};
        $count{ seg_decode($segs[-1]) }++;
    }
    return \%count;
}
wait_for(sub { my $c = counts(); !grep { !$c->{$_} } keys %want }, 60);
ok(marker(), 'marker call arrived');

my $count = counts();
my @wrong = grep { ($count->{$_} // 0) != 1 } sort keys %want;
is(scalar @wrong, 0, 'every event arrived exactly once')
    or diag(join "\n", map { "$_: " . ($count->{$_} // 0) . " calls" }
                           grep { defined } @wrong[0 .. 19]);

my %txn;
for my $c (calls()) {
    my %q = parse_query($c->{query});
    $txn{ $q{txn} // '' }++;
}
is(scalar(grep { $_ > 1 } values %txn), 0, 'no txn was sent twice');

my $in = join ',', map { sql_quote($_) } keys %want;
# a call is recorded before its outcome is written: wait for the outbox
my $rows;
wait_for(sub {
    $rows = outbox("SELECT state, count(*) AS n FROM et_event WHERE oid IN ($in) "
                   . "GROUP BY state");
    @$rows == 1 && $rows->[0]{state} == 1 && $rows->[0]{n} == keys %want;
}, 30);
is_deeply($rows, [{ state => 1, n => scalar keys %want }],
          'the outbox has them all delivered') or diag(explain $rows);

open my $log, '<', $errlog or die "open $errlog: $!";
seek $log, $errlog_start, 0;
my @trouble = grep { /eventtrigger:(?:error|crit|alert|emerg|warn)/ || /database is locked|SQLITE_BUSY/i }
    <$log>;
is(scalar @trouble, 0, 'no warning or error of the module in the error log')
    or diag(join '', @trouble[0 .. ($#trouble > 9 ? 9 : $#trouble)]);
