using System.CommandLine;
using Spectre.Console;
using TorchSharp;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Cli;

internal static class InferenceCommands
{
    public static Command Ensemble()
    {
        var c = new Command("ensemble", "combine task files of one task (same backbone, same classes) into a prompt-ensemble file; " +
                                        "eval and predict accept it and average the members' softmax in one backbone pass");
        var tasks = new Argument<string[]>("tasks") { Description = "member task files (task.vpt), at least two", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out", "-o") { Description = "ensemble file to write", Required = true };
        c.Arguments.Add(tasks);
        c.Options.Add(output);
        c.Options.Add(Guards.Force);
        c.SetAction(r => Common.Run(() =>
        {
            string path = r.GetValue(output)!;
            Guards.CheckOutput(path, r.GetValue(tasks)!, r.GetValue(Guards.Force), "--out");
            var ensemble = EnsembleArtifact.FromFiles(r.GetValue(tasks)!);
            ensemble.Save(path);
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {path}: {ensemble.Members.Count} members " +
                $"({string.Join(", ", ensemble.Members.Select(m => m.Metadata.Method))}), {ensemble.Classes.Length} classes"));
            return 0;
        }));
        return c;
    }

    /// <summary>`vpt info` of an ensemble file: its members, shared classes and backbone.</summary>
    public static int EnsembleInfo(string path)
    {
        var ens = EnsembleArtifact.Load(path);
        var table = new Table().AddColumns("field", "value");
        table.AddRow("ensemble file", $"{Markup.Escape(path)} ({new FileInfo(path).Length:N0} bytes)");
        for (int j = 0; j < ens.Members.Count; j++)
        {
            var md = ens.Members[j].Metadata;
            long count = ens.Members[j].Tensors.Values.Sum(t => t.numel());
            table.AddRow($"member {j + 1}", Markup.Escape($"{ens.Sources[j]}: {md.Method} {md.MethodConfig.ToJsonString()}, {count:N0} parameters"));
        }
        table.AddRow("classes", Markup.Escape($"{ens.Classes.Length}: {string.Join(", ", ens.Classes.Take(10))}{(ens.Classes.Length > 10 ? ", …" : "")}"));
        table.AddRow("backbone", Markup.Escape($"{ens.Backbone.Source} sha256 {ens.Backbone.Sha256}"));
        AnsiConsole.Write(table);
        return 0;
    }
}
