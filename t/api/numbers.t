# Numbers in the saved object: integers (up to 64 bits) keep their value and
# text; real numbers keep their value in JSON, and in a form body they should
# read as the console wrote them ("9.99", not "9.9900000000000002").
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

plan tests => 8;

start_console();
start_receiver(truncate => 1);

my %ids = (json => uniq('num-json'), form => uniq('num-form'));
my $raw = '{"id":"%s","price":9.99,"ratio":0.1,"half":-2.5,'
        . '"int":9007199254740993,"min":-9223372036854775808,"zero":0}';
my %res;
for my $f (qw(json form)) {
    my $site = "et_$f";
    $res{$f} = request($site, POST => '/inproc/member',
                       content => sprintf($raw, $ids{$f}),
                       headers => { 'X-Console-Raw' => 1 });
    is($res{$f}->code, 201, "$f: create answered");
}

wait_for(sub { !grep { !calls_for_id($_) } values %ids }, 20);
ok(marker(), 'marker call arrived');

my($jcall) = calls_for_id($ids{json});
my($fcall) = calls_for_id($ids{form});
my $expected = expected_object($res{json}, 'member');

is(canon(json_text($jcall ? $jcall->{body} : 'null')), canon($expected),
   'json: every number keeps its value');
like($jcall ? $jcall->{body} : '', qr/"int":9007199254740993\b.*"min":-9223372036854775808\b/,
     'json: 64-bit integers keep their text');

my $form = $fcall ? form_decode($fcall->{body}) : {};
is_deeply([@{$form}{qw(int min zero half)}],
          ['9007199254740993', '-9223372036854775808', '0', '-2.5'],
          'form: integers and short reals as their text');

is_deeply([@{$form}{qw(price ratio)}], ['9.99', '0.1'],
          'form: 9.99 and 0.1 read as the console wrote them')
    or diag($fcall ? $fcall->{body} : 'no call');
like($jcall ? $jcall->{body} : '', qr/"price":9\.99,"ratio":0\.1,/,
     'json: 9.99 and 0.1 keep their text');
