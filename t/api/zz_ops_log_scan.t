# Runs last (zz_): a sweep over what the whole run logged, and over the
# module's sources, for the log promises of README "Logs":
# - every message of the module starts with its own tag, "ETnnnnn: ", in
#   t/logs/error_log (every test's lines, restarts included);
# - in the sources, every log call's message starts with a tag, and no tag
#   is used by two messages;
# - no secret of the test configuration (t/conf/operations.conf.in) is in
#   any log under t/logs.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);

plan tests => 5;

my $error_log = t_path('t_logs', 'error_log');

my @untagged = untagged_lines($error_log);
is_deeply(\@untagged, [], 'every [eventtrigger:...] line of the run starts with an ET tag')
    or diag(join "\n", @untagged[0 .. ($#untagged < 20 ? $#untagged : 19)]);
my %tags;
for (read_lines($error_log)) {
    $tags{$1}++ if /\[eventtrigger:\w+\] .*?\b(ET\d{5}): /;
}
note('tags seen: ' . join ' ', map { "$_ x$tags{$_}" } sort keys %tags);
cmp_ok(scalar(keys %tags), '>=', 5, 'the run logged several kinds of module messages');

# the sources: log calls (httpd's ap_log_*error, the dispatcher's dlog and
# the intake's ilog)
my $src = t_path('t_dir', '..');
my(@no_tag, %uses);
for my $file (glob("$src/*.c"), glob("$src/lib/*.c")) {
    my $text = do { local $/; open my $fh, '<', $file or next; <$fh> };
    (my $name = $file) =~ s{^\Q$src\E/}{};
    while ($text =~ /\b(ap_log_[rpc]?error|dlog|ilog)\s*\(([^;]*?)("(?:[^"\\]|\\.)*")/gs) {
        my($fn, $str) = ($1, $3);
        next if $str eq '"%s"' || $str eq '""';   # pass-throughs of tagged text
        if ($str =~ /^"(ET\d{5}): /) { push @{ $uses{$1} }, $name }
        else { push @no_tag, "$name: $fn($str" }
    }
}
is_deeply(\@no_tag, [], 'in the sources, every log message starts with ETnnnnn: ');
is_deeply([grep { @{ $uses{$_} } > 1 } sort keys %uses], [],
          'and no tag is used by two messages') or diag(explain \%uses);

# no secret of the test configuration in any log
my @secrets = ('b3BzLWxvZy1zZWNyZXQta2V5LW5vdC1mb3ItbG9ncyE', 'ops-log-secret-key-not-for-logs',
               'ops-token-9f3a7c1e5b');
my @leaks;
for my $file (grep { -f && !/\.jsonl\z/ } glob t_path('t_logs', '*')) {
    my $text = do { local $/; open my $fh, '<', $file or next; <$fh> } // '';
    for my $s (@secrets) {
        push @leaks, "$file: $s" if index($text, $s) >= 0;
    }
}
is_deeply(\@leaks, [], 'no secret or header value of the configuration in t/logs/*')
    or diag(join "\n", @leaks);
